"""Where the ConfigStore node classes live, so a composed config pickles by reference.

The node classes are made at run time from the entries' schemas (:mod:`hairlab.contract.store`).
Hydra's launchers mostly ship configs with cloudpickle, which copes; plain ``pickle`` (a
``multiprocessing`` spawn, a cache) needs an importable home. A process that unpickles a config
first loads the plugins and registers the schemas, which re-creates the same classes.
"""

from __future__ import annotations

from typing import Any

_CLASSES: dict[str, type] = {}


def add(cls: type) -> type:
    """Give ``cls`` this module as its home (its name must be unique among nodes)."""
    cls.__module__ = __name__
    cls.__qualname__ = cls.__name__
    _CLASSES[cls.__name__] = cls
    return cls


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _CLASSES:  # an unpickling process: make the nodes as `hairlab run` does
        from hydra.core.config_store import ConfigStore

        from hairlab.contract.store import register_schemas
        from hairlab.plugin_manager import get_host

        register_schemas(get_host(), ConfigStore.instance())
    try:
        return _CLASSES[name]
    except KeyError:
        raise AttributeError(f"no config node class {name!r} (is the plugin that provides it installed?)") from None
