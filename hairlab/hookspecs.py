"""The hooks a hairlab plugin may implement: one per plugin kind, plus configs.

A plugin is any module registered under the ``hairlab`` setuptools entry-point group
(``[project.entry-points.hairlab]`` in its pyproject.toml) whose functions carry
``@hairlab.api.hookimpl``. Each kind hook returns a list of :class:`hairlab.api.Entry`;
the manager attributes every entry to the plugin that returned it, so a name clash, a
failing hook or a wrong return type is reported against the right package (once) and
skipped, never fatal. As in pluggy, a hookimpl may declare fewer arguments than its spec.
docs/plugins.md is the author's guide.

Factories are called lazily, only when a run asks for the entry, so hooks should be cheap:
import torch inside the factory, not at the top of the plugin module, to keep
``hairlab --help`` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hairlab import hookspec

if TYPE_CHECKING:
    from hairlab.registry import Entry


@hookspec
def hairlab_blocks() -> list[Entry]:
    """Building blocks a model config can stack into stages.

    Factory contract: ``factory(in_channels: int, out_channels: int, *, stride: int = 1,
    **options) -> torch.nn.Module`` mapping ``(N, in_channels, H, W)`` to
    ``(N, out_channels, H', W')``. ``options`` are the stage's keys from the model config
    (e.g. ``kernel_size``, ``batch_norm``); unknown keys should raise ``TypeError``.
    """


@hookspec
def hairlab_heads() -> list[Entry]:
    """Classifier heads that end a model.

    Factory contract: ``factory(in_channels: int, num_classes: int, **options) ->
    torch.nn.Module`` mapping feature maps ``(N, in_channels, H, W)`` to logits
    ``(N, num_classes)``. Softmax is left to the loss (training) and to the cost model
    (which counts it as the final layer).
    """


@hookspec
def hairlab_optimizers() -> list[Entry]:
    """Optimizers.

    Factory contract: ``factory(params, **options) -> torch.optim.Optimizer`` where
    ``params`` is an iterable of tensors or parameter groups and ``options`` are the
    optimizer config's keys other than ``name`` (e.g. ``lr``, ``momentum``).
    """


@hookspec
def hairlab_hardware() -> list[Entry]:
    """Hardware targets for the analytical cost model (``hairlab hw-report``).

    Factory contract: ``factory(**options) -> hairlab.api.Target``; the options are the
    ``hardware`` config group's keys other than ``name``, checked against the entry's schema
    (extend ``hairlab.api.TargetOptions``) with every default filled in.
    """


@hookspec
def hairlab_datasets() -> list[Entry]:
    """Datasets.

    Factory contract: ``factory(**options) -> hairlab.api.DataModule``; the options are
    the ``dataset`` config group's keys other than ``name`` (``root``, ``train_size``,
    ``test_size``, ``val_size``, ...), checked against the entry's schema with every default
    filled in. ``hairlab.api.TensorDataModule`` and ``BaseDataModule`` give the shared parts.
    """


@hookspec
def hairlab_config_searchpath() -> list[str]:
    """Hydra config search-path entries this plugin contributes.

    Return e.g. ``["pkg://my_plugin.conf"]``: a package (or ``file://`` directory) laid out
    like hairlab's own ``conf/`` (``optimizer/lion.yaml``, ``model/tiny.yaml``,
    ``experiment/foo.yaml``). Installing the plugin then makes ``optimizer=lion`` valid with
    no edit to hairlab's config tree. ``pkg://`` works for wheel and editable installs
    alike, unlike Hydra's ``hydra_plugins`` namespace discovery.
    """


@hookspec
def hairlab_configure_store(store: object) -> None:
    """Register structured configs in Hydra's ``ConfigStore`` (passed as ``store``).

    Use ``store.store(group="optimizer", name="lion", node=LionConfig, provider="my-pkg")``
    when a typed dataclass serves better than a YAML file.
    """
