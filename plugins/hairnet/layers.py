"""The torch modules behind the hairnet plugin's blocks and heads.

Imported only from factories (never from the plugin module itself), so loading the plugin
does not import torch. Module names inside each block (``conv``, ``bn``, ``dw``, ``pw`` ...)
are stable because the cost model reports layers by them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _pad(kernel_size: int, padding: int | None) -> int:
    """'Same' padding for odd kernels unless the config says otherwise."""
    return kernel_size // 2 if padding is None else padding


#: Activations a block may use, by option value.
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


def conv_norm_act(
    in_channels: int, out_channels: int, *, kernel_size: int, stride: int, padding: int | None,
    groups: int, batch_norm: bool, prefix: str = "", activation: str | None = "relu",
) -> list[tuple[str, nn.Module]]:
    """Conv (+ BN) (+ activation) as named layers; the conv has a bias only when no BN follows.

    With BN the bias is redundant: the batch mean subtraction cancels it and BN's beta plays
    its role (the paper's section 3.2), so it would be a dead parameter. ``activation=None``
    is a linear layer (MobileNetV2's projection).
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=_pad(kernel_size, padding), groups=groups, bias=not batch_norm)
    names = ("conv", "bn", "relu") if not prefix else (prefix, f"{prefix}_bn", f"{prefix}_relu")
    layers: list[tuple[str, nn.Module]] = [(names[0], conv)]
    if batch_norm:
        layers.append((names[1], nn.BatchNorm2d(out_channels)))
    if activation is not None:
        layers.append((names[2], ACTIVATIONS[activation](inplace=True)))
    return layers


class ConvBNReLU(nn.Sequential):
    """Standard (or grouped) convolution, optional batch norm, ReLU (or ReLU6)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, kernel_size: int = 3,
                 padding: int | None = None, batch_norm: bool = True, groups: int = 1,
                 activation: str = "relu") -> None:
        super().__init__(OrderedDict(conv_norm_act(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding,
            groups=groups, batch_norm=batch_norm, activation=activation)))


class DWSeparable(nn.Sequential):
    """Figure 2: depthwise KxK, BN, ReLU, then pointwise 1x1, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, kernel_size: int = 3,
                 batch_norm: bool = True) -> None:
        layers = conv_norm_act(in_channels, in_channels, kernel_size=kernel_size, stride=stride,
                               padding=None, groups=in_channels, batch_norm=batch_norm, prefix="dw")
        layers += conv_norm_act(in_channels, out_channels, kernel_size=1, stride=1, padding=0,
                                groups=1, batch_norm=batch_norm, prefix="pw")
        super().__init__(OrderedDict(layers))


class InvertedResidual(nn.Sequential):
    """MobileNetV2's block: 1x1 expansion, depthwise KxK, linear 1x1 projection, residual.

    ``expand`` (skipped when ``expansion`` is 1, as in the paper's first bottleneck) widens to
    ``round(in_channels * expansion)`` channels, ``dw`` filters them, ``project`` maps to
    ``out_channels`` with no activation (a ReLU on the narrow output loses information, the
    paper's argument). The input is added back when stride is 1 and the shapes match.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, expansion: float = 6,
                 kernel_size: int = 3, batch_norm: bool = True, activation: str = "relu6") -> None:
        hidden = round(in_channels * expansion)
        layers: list[tuple[str, nn.Module]] = []
        if expansion != 1:
            layers += conv_norm_act(in_channels, hidden, kernel_size=1, stride=1, padding=0, groups=1,
                                    batch_norm=batch_norm, prefix="expand", activation=activation)
        layers += conv_norm_act(hidden, hidden, kernel_size=kernel_size, stride=stride, padding=None,
                                groups=hidden, batch_norm=batch_norm, prefix="dw", activation=activation)
        layers += conv_norm_act(hidden, out_channels, kernel_size=1, stride=1, padding=0, groups=1,
                                batch_norm=batch_norm, prefix="project", activation=None)
        super().__init__(OrderedDict(layers))
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = super().forward(x)
        return x + y if self.residual else y


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GapHead(nn.Sequential):
    """Fully convolutional head: one map per class already, so only global average pooling."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        if in_channels != num_classes:
            raise ValueError(
                f"head 'gap' needs the last stage to emit one map per class ({num_classes}), got "
                f"{in_channels} channels; set the last stage's width to num_classes or use head 'dense'"
            )
        super().__init__(OrderedDict(gap=GlobalAvgPool()))


class DenseHead(nn.Sequential):
    """Global average pooling, then one dense layer with one unit per class."""

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.0) -> None:
        layers: list[tuple[str, nn.Module]] = [("gap", GlobalAvgPool())]
        if dropout > 0:
            layers.append(("dropout", nn.Dropout(dropout)))
        layers.append(("fc", nn.Linear(in_channels, num_classes)))
        super().__init__(OrderedDict(layers))


class MLPHead(nn.Sequential):
    """AlexNet's classifier: pool to a fixed grid, flatten, hidden dense layers with dropout."""

    def __init__(self, in_channels: int, num_classes: int, *,
                 hidden: list[int] | tuple[int, ...] = (4096, 4096), dropout: float = 0.5,
                 pool_size: int = 6) -> None:
        layers: list[tuple[str, nn.Module]] = [
            ("pool", nn.AdaptiveAvgPool2d(pool_size)), ("flatten", nn.Flatten(1))]
        width = in_channels * pool_size * pool_size
        for i, units in enumerate(hidden, start=1):
            if dropout > 0:
                layers.append((f"dropout{i}", nn.Dropout(dropout)))
            layers += [(f"fc{i}", nn.Linear(width, units)), (f"relu{i}", nn.ReLU(inplace=True))]
            width = units
        layers.append((f"fc{len(hidden) + 1}", nn.Linear(width, num_classes)))
        super().__init__(OrderedDict(layers))
