"""Built-in hairnet plugin: the paper's blocks (Figure 2) and heads, plus the zoo's (AlexNet, MobileNetV2).

Torch is imported inside the factories (via :mod:`.layers`), so loading this plugin stays
cheap. Each entry has a ``schema`` dataclass listing its options; the model builder checks
a stage's keys against it before calling the factory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from hairlab import hookimpl
from hairlab.contract.schema import opt
from hairlab.registry import Entry


class _Grouped:
    """``groups`` must divide both channel counts; the builder asks before building anything."""

    groups: int

    def __post_init__(self) -> None:
        if self.groups < 1:
            raise ValueError(f"groups={self.groups}: expected an integer >= 1")

    def check_channels(self, in_channels: int, out_channels: int) -> None:
        if in_channels % self.groups or out_channels % self.groups:
            raise ValueError(f"groups={self.groups} does not divide {in_channels} input and {out_channels} output "
                             "channels; choose groups dividing both (or widths divisible by groups)")


@dataclass
class ConvBNReLUOptions(_Grouped):
    """Options of ``conv_bn_relu``."""

    kernel_size: int = 3
    #: ``None`` means 'same' padding (kernel_size // 2).
    padding: Optional[int] = None
    batch_norm: bool = True
    groups: int = opt(1, "grouped convolution: channels split into this many towers (AlexNet's 2)")
    activation: Literal["relu", "relu6"] = opt("relu", "relu, or relu6 (MobileNetV2's stem and last layer)")


@dataclass
class ConvReLUOptions(_Grouped):
    """Options of ``conv_relu``: AlexNet-style convolution with bias and no normalization."""

    kernel_size: int = 3
    padding: Optional[int] = None
    groups: int = opt(1, "grouped convolution: channels split into this many towers (AlexNet's 2)")


@dataclass
class DWSeparableOptions:
    """Options of ``dw_separable``."""

    kernel_size: int = 3
    batch_norm: bool = True


@dataclass
class InvertedResidualOptions:
    """Options of ``inverted_residual`` (MobileNetV2's bottleneck)."""

    expansion: float = opt(6.0, "hidden width = round(in_channels * expansion); 1 skips the expansion conv")
    kernel_size: int = opt(3, "depthwise kernel size")
    batch_norm: bool = opt(True, "BN after every conv (false: conv biases instead)")
    activation: Literal["relu", "relu6"] = opt("relu6", "after the expansion and depthwise convs")

    def __post_init__(self) -> None:
        if not self.expansion > 0:
            raise ValueError(f"expansion={self.expansion}: expected a number > 0")


@dataclass
class GapOptions:
    """``gap`` takes no options."""


@dataclass
class DenseOptions:
    """Options of ``dense``."""

    dropout: float = 0.0


@dataclass
class MLPOptions:
    """Options of ``mlp`` (AlexNet's classifier)."""

    hidden: list[int] = field(default_factory=lambda: [4096, 4096])
    dropout: float = 0.5
    pool_size: int = 6


def conv_bn_relu(in_channels: int, out_channels: int, *, stride: int = 1, **options: Any) -> Any:
    from hairlab_plugins.hairnet.layers import ConvBNReLU

    return ConvBNReLU(in_channels, out_channels, stride=stride, **options)


def conv_relu(in_channels: int, out_channels: int, *, stride: int = 1, **options: Any) -> Any:
    from hairlab_plugins.hairnet.layers import ConvBNReLU

    return ConvBNReLU(in_channels, out_channels, stride=stride, batch_norm=False, **options)


def dw_separable(in_channels: int, out_channels: int, *, stride: int = 1, **options: Any) -> Any:
    from hairlab_plugins.hairnet.layers import DWSeparable

    return DWSeparable(in_channels, out_channels, stride=stride, **options)


def inverted_residual(in_channels: int, out_channels: int, *, stride: int = 1, **options: Any) -> Any:
    from hairlab_plugins.hairnet.layers import InvertedResidual

    return InvertedResidual(in_channels, out_channels, stride=stride, **options)


def gap_head(in_channels: int, num_classes: int, **options: Any) -> Any:
    from hairlab_plugins.hairnet.layers import GapHead

    return GapHead(in_channels, num_classes, **options)


def dense_head(in_channels: int, num_classes: int, **options: Any) -> Any:
    from hairlab_plugins.hairnet.layers import DenseHead

    return DenseHead(in_channels, num_classes, **options)


def mlp_head(in_channels: int, num_classes: int, **options: Any) -> Any:
    from hairlab_plugins.hairnet.layers import MLPHead

    return MLPHead(in_channels, num_classes, **options)


@hookimpl
def hairlab_blocks() -> list[Entry]:
    from hairlab_plugins.hairnet.whitening import whiten_entry

    return [
        Entry("conv_bn_relu", conv_bn_relu,
              "Standard convolution, batch norm, ReLU (bias only when batch_norm=false).", ConvBNReLUOptions),
        Entry("dw_separable", dw_separable,
              "Depthwise separable block (Figure 2): depthwise KxK-BN-ReLU, pointwise 1x1-BN-ReLU.",
              DWSeparableOptions),
        Entry("conv_relu", conv_relu,
              "Convolution with bias and ReLU, no normalization (AlexNet's layers).", ConvReLUOptions),
        Entry("inverted_residual", inverted_residual,
              "MobileNetV2's bottleneck: 1x1 expansion, depthwise KxK, linear 1x1 projection, residual "
              "when stride 1 and shapes match; ReLU6.", InvertedResidualOptions),
        whiten_entry(),  # plugins/hairnet/whitening.py (H5)
    ]


@hookimpl
def hairlab_heads() -> list[Entry]:
    return [
        Entry("gap", gap_head,
              "Fully convolutional: the last stage emits one map per class, then global average pooling.",
              GapOptions),
        Entry("dense", dense_head,
              "Global average pooling, then one dense layer with one unit per class.", DenseOptions),
        Entry("mlp", mlp_head,
              "AlexNet's classifier: pool to a grid, flatten, dense layers with dropout.", MLPOptions),
    ]
