"""The config-to-dict helper every module uses (OmegaConf nodes, mappings, None)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hairlab.errors import HairlabError


def to_dict(node: Any, *, resolve: bool = True) -> dict[str, Any]:
    """A plain dict of ``node``, interpolations resolved; ``{}`` for None.

    Plain containers all the way down, so the result can be compared, hashed into a key or
    handed to a factory without OmegaConf types leaking into plugins.
    """
    if node is None:
        return {}
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=resolve)  # type: ignore[return-value]
    if not isinstance(node, Mapping):
        raise HairlabError(f"expected a mapping of options, got {type(node).__name__}: {node!r}")
    return {str(k): _plain(v, resolve) for k, v in node.items()}


def _plain(value: Any, resolve: bool) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=resolve)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, resolve) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, resolve) for v in value]
    return value
