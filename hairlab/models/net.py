"""The container every config-built model is: named stages and pools, then a head."""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """``body`` (``stage1``, ``pool1``, ...) followed by ``head``.

    It remembers the input shape and class count from its config so that tools (the cost
    model, ``hw-report``) can run it without a dataset.
    """

    def __init__(self, body: nn.Module, head: nn.Module, *, input_shape: tuple[int, ...],
                 num_classes: int, name: str) -> None:
        super().__init__()
        self.body, self.head = body, head
        self.input_shape, self.num_classes, self.name = tuple(input_shape), num_classes, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
