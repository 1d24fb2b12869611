"""The residual depthwise-separable block."""

from __future__ import annotations

import torch
from torch import nn


class ResidualDW(nn.Module):
    """depthwise KxK -> BN -> ReLU -> pointwise 1x1 -> BN, plus a shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, kernel_size: int,
                 batch_norm: bool) -> None:
        super().__init__()
        pad = kernel_size // 2
        norm = nn.BatchNorm2d if batch_norm else (lambda c: nn.Identity())
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride, pad,
                                   groups=in_channels, bias=not batch_norm)
        self.bn1 = norm(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=not batch_norm)
        self.bn2 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.depthwise(x)))
        y = self.bn2(self.pointwise(y))
        return self.relu(y + self.shortcut(x))
