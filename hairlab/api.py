"""hairlab's public surface for plugin authors: import from here, nothing else.

Everything a plugin of any kind needs, under one stable name, so a plugin never depends on
where hairlab keeps things inside (docs/plugins.md walks through each kind):

- declaring entries: :class:`Entry`, :data:`hookimpl`, :data:`KINDS`;
- options: :func:`opt` (a schema field with one-line help) and :func:`validate` (check a config
  node against its entry's schema, without building it), :class:`HairlabError` (one line to the
  user, exit status 2);
- datasets: the :class:`DataModule` protocol, :class:`BaseDataModule` (splits, statistics, the
  drop-last rule, ``info()``) and :class:`TensorDataModule` (all of it for data held in memory);
- hardware targets: :class:`Target`, :class:`TargetOptions` (the report options every target
  takes, to extend) with :func:`common_options` and :func:`require_positive`,
  :class:`Conventions`, :class:`Reference`, :class:`Layer`;
- testing: :class:`PluginHost` (register your plugin, ``collect()``, then build through it) and
  :func:`build_model`.

Importing this module imports neither torch nor mlflow; :class:`TensorDataModule` and
:class:`Layer`'s extraction load torch only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hairlab import hookimpl
from hairlab.contract.entries import validate
from hairlab.contract.schema import opt
from hairlab.costmodel.layers import Layer
from hairlab.costmodel.target import Conventions, Reference, Target, TargetOptions, common_options, require_positive
from hairlab.data import DataModule
from hairlab.data.base import BaseDataModule
from hairlab.errors import HairlabError
from hairlab.plugin_manager import PluginHost
from hairlab.registry import KINDS, Entry

if TYPE_CHECKING:
    from hairlab.data.tensor import TensorDataModule

__all__ = [
    "KINDS",
    "BaseDataModule",
    "Conventions",
    "DataModule",
    "Entry",
    "HairlabError",
    "Layer",
    "PluginHost",
    "Reference",
    "Target",
    "TargetOptions",
    "TensorDataModule",
    "build_model",
    "common_options",
    "hookimpl",
    "opt",
    "require_positive",
    "validate",
]


def build_model(model_cfg: Any, host: PluginHost, *, num_classes: int | None = None,
                input_shape: tuple[int, int, int] | None = None) -> Any:
    """The ``torch.nn.Module`` a model config describes, from the blocks and heads of ``host``.

    A model config is a mapping like ``conf/model/*.yaml``: ``input_shape``, ``num_classes``,
    ``stages`` (each ``{block: NAME, width: N, repeat: R, ...block options}``) and ``head``.
    """
    from hairlab.models import build_model as impl

    return impl(model_cfg, host, num_classes=num_classes, input_shape=input_shape)


def __getattr__(name: str) -> Any:
    if name == "TensorDataModule":  # imports torch: only when asked for
        from hairlab.data.tensor import TensorDataModule

        return TensorDataModule
    raise AttributeError(f"module 'hairlab.api' has no attribute {name!r}")
