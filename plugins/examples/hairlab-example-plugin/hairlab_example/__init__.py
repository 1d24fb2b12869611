"""hairlab-example-plugin: one block, one optimizer, and the configs that select them.

Only this module is named in the entry point; hairlab imports it and calls its hooks.
torch is imported inside the factories so that `hairlab --help` stays fast.
"""

from __future__ import annotations

from typing import Any

from hairlab import hookimpl
from hairlab.registry import Entry


def make_residual_dw(in_channels: int, out_channels: int, *, stride: int = 1,
                     kernel_size: int = 3, batch_norm: bool = True) -> Any:
    from hairlab_example.blocks import ResidualDW

    return ResidualDW(in_channels, out_channels, stride=stride, kernel_size=kernel_size,
                      batch_norm=batch_norm)


def make_lion(params: Any, lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99,
              weight_decay: float = 0.0) -> Any:
    from hairlab_example.lion import Lion

    return Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)


@hookimpl
def hairlab_blocks() -> list[Entry]:
    return [Entry("residual_dw", make_residual_dw,
                  "Depthwise-separable block with an identity (or 1x1) shortcut.")]


@hookimpl
def hairlab_optimizers() -> list[Entry]:
    return [Entry("lion", make_lion, "Lion: sign of interpolated momentum (Chen et al., 2023).")]


@hookimpl
def hairlab_config_searchpath() -> list[str]:
    # Our conf/ is laid out like hairlab's: optimizer/lion.yaml, model/example_resnet.yaml.
    return ["pkg://hairlab_example.conf"]
