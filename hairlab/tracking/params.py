"""Flatten a resolved config into stable dotted parameter names.

MLflow's compare view lines runs up by parameter name, so every run of every sweep must
spell the same setting the same way: ``optimizer.lr``, ``trainer.batch_size``,
``model.stages.0.block``. Values are written the way a Hydra override would spell them
(``true``, ``null``, ``1e-08``), so a value in the UI can be pasted back onto the command
line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

#: MLflow refuses longer parameter values (``mlflow.utils.validation.MAX_PARAM_VAL_LENGTH``).
MAX_VALUE_LENGTH = 6000
#: Characters MLflow accepts in a key; anything else becomes ``_``.
#: Top-level config keys that are not logged as params.
NOT_PARAMS = ("hydra", "tags")
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def format_value(value: Any) -> str:
    """A scalar as a Hydra override would spell it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps([_jsonable(v) for v in value], separators=(",", ":"))
    return str(value)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def clean_key(key: str) -> str:
    """A key MLflow accepts (alphanumerics, ``_ - . /`` and spaces)."""
    return _BAD_KEY_CHARS.sub("_", key)


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys to override-style strings.

    Mappings recurse; a list of scalars stays one value (``[0,1]``) so its column is stable
    whatever its length; a list holding mappings recurses by index (``stages.0.block``).
    """
    out: dict[str, str] = {}
    if isinstance(tree, Mapping):
        if not tree and prefix:
            out[prefix] = "{}"
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in tree):
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        text = format_value(tree)
        if len(text) > MAX_VALUE_LENGTH:
            text = text[: MAX_VALUE_LENGTH - 3] + "..."
        out[clean_key(prefix)] = text
    return out


def config_params(cfg: Any) -> dict[str, str]:
    """The job's resolved config (without the ``hydra`` node) as flat parameters.

    The user's ``tags`` are left out too: they become the run's MLflow tags
    (:func:`hairlab.tracking.context.user_tags`), and a label must not show up as a setting
    that differs in the compare view.

    A value whose interpolation cannot be resolved is kept as written (``${...}``) rather
    than failing the run.
    """
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(cfg, DictConfig):
        return flatten(cfg)
    container: dict[str, Any] = {}
    for key in (str(k) for k in cfg):
        if key in NOT_PARAMS:
            continue
        try:
            node = cfg[key]
            container[key] = OmegaConf.to_container(node, resolve=True) if _is_node(cfg, key) else node
        except Exception:  # noqa: BLE001 - an unresolvable interpolation is logged as written
            raw: Any = OmegaConf.to_container(cfg, resolve=False)
            container[key] = raw[key]
    return flatten(container)


def _is_node(cfg: Any, key: str) -> bool:
    from omegaconf import DictConfig, ListConfig

    return isinstance(cfg._get_node(key), (DictConfig, ListConfig))
