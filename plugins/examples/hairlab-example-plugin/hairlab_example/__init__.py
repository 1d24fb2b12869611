"""hairlab-example-plugin: one block, one optimizer, and a preset model that uses them.

Only this module is named in the entry point; hairlab imports it and calls its hooks.
Everything comes from :mod:`hairlab.api`, hairlab's public surface for plugins. torch is
imported inside the factories so that `hairlab --help` stays fast.

Each option is defined once, in a schema dataclass: hairlab checks a config against it before
anything runs, shows it in `hairlab list optimizers lion`, and stores it in Hydra's
ConfigStore, so `optimizer=lion` works with no YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hairlab.api import Entry, hookimpl, opt


@dataclass
class ResidualDWOptions:
    """Options of the ``residual_dw`` block (a model config's stage keys)."""

    kernel_size: int = opt(3, "depthwise kernel size (odd)")
    batch_norm: bool = opt(True, "BatchNorm after each conv (convs then have no bias)")

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size}: expected an odd integer >= 1")


@dataclass
class LionOptions:
    """Lion (Chen et al., 2023): use a learning rate 3-10x smaller than AdamW's."""

    lr: float = opt(1e-4, "step size, > 0")
    beta1: float = opt(0.9, "momentum/gradient interpolation for the update's sign, in [0, 1)")
    beta2: float = opt(0.99, "decay of the momentum, in [0, 1)")
    weight_decay: float = opt(0.0, "decoupled weight decay, >= 0")

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}: expected a number > 0")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: expected a number in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay}: expected a number >= 0")


def make_residual_dw(in_channels: int, out_channels: int, *, stride: int = 1, kernel_size: int,
                     batch_norm: bool) -> Any:
    """Factory: hairlab passes the contract arguments and every option, checked and filled in."""
    from hairlab_example.blocks import ResidualDW

    return ResidualDW(in_channels, out_channels, stride=stride, kernel_size=kernel_size, batch_norm=batch_norm)


def make_lion(params: Any, *, lr: float, beta1: float, beta2: float, weight_decay: float) -> Any:
    from hairlab_example.lion import Lion

    return Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)


@hookimpl
def hairlab_blocks() -> list[Entry]:
    return [Entry("residual_dw", make_residual_dw,
                  "Depthwise-separable block with an identity (or 1x1) shortcut.", ResidualDWOptions)]


@hookimpl
def hairlab_optimizers() -> list[Entry]:
    return [Entry("lion", make_lion, "Lion: sign of interpolated momentum (Chen et al., 2023).", LionOptions)]


@hookimpl
def hairlab_config_searchpath() -> list[str]:
    # Our conf/ is laid out like hairlab's: model/example_resnet.yaml (a preset: stages and widths).
    return ["pkg://hairlab_example.conf"]
