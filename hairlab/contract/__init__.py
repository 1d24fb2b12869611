"""The typed plugin contract: schemas as the single source of options, one build path, checked early.

- :mod:`.schema`: an entry's options from its ``schema`` dataclass (types, defaults, one-line
  help in field metadata) and the checker (types, unknown keys, the schema's ``__post_init__``
  ranges).
- :mod:`.entries`: ``validate``/``build`` of a config node through its entry's schema and factory;
  failures name the kind, entry and plugin. ``settings`` does the same for the core's own nodes.
- :mod:`.store`: the schemas as nodes in Hydra's ConfigStore (``optimizer=lion`` needs no YAML).
- :mod:`.preflight`: the whole composed config, and every job of a sweep, before anything runs.
- :mod:`.convert`: the one config-to-dict helper.

Nothing here imports torch or mlflow.
"""

from __future__ import annotations

from hairlab.contract.convert import to_dict
from hairlab.contract.entries import build, call, owner, schema_of, settings, validate
from hairlab.contract.preflight import check_config, check_data, check_sweep
from hairlab.contract.schema import HELP, Option, check, opt, options
from hairlab.contract.store import register_schemas

__all__ = [
    "HELP",
    "Option",
    "build",
    "call",
    "check",
    "check_config",
    "check_data",
    "check_sweep",
    "opt",
    "options",
    "owner",
    "register_schemas",
    "schema_of",
    "settings",
    "to_dict",
    "validate",
]
