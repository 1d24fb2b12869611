"""Per-batch augmentation and normalization on uint8 tensors, on the training device.

Doing this on whole batches (one gather for crop and flip together, one fused multiply-add
for normalization) costs a fraction of a millisecond per CIFAR batch, where per-image PIL
transforms in DataLoader workers would cost more than the training step on a 2-core CPU.
All random draws come from a CPU generator, so results do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, *, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (after zero padding by ``padding`` pixels) and random horizontal flip.

    ``x`` is a uint8 batch ``(B, C, H, W)``; the result has the same shape. Each example gets
    its own offsets and flip, drawn from ``generator`` on the CPU in the order
    (row offsets, column offsets, flips). Crop and flip are one ``gather`` over each padded
    image's flattened pixels, about 3x faster than 4-D advanced indexing here.
    """
    if padding <= 0 and not hflip:
        return x
    b, c, h, w = x.shape
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    if padding > 0:
        x = F.pad(x, (padding, padding, padding, padding))
        rows = rows + torch.randint(0, 2 * padding + 1, (b, 1, 1), generator=generator)
        cols = cols + torch.randint(0, 2 * padding + 1, (b, 1, 1), generator=generator)
    if hflip:
        flip = torch.rand(b, 1, 1, generator=generator) < 0.5
        cols = torch.where(flip, cols.flip(-1), cols)
    width = w + 2 * max(padding, 0)
    index = (rows * width + cols).view(-1, 1, h * w).expand(b, c, h * w).to(x.device)
    return x.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


class Normalizer:
    """``(x / 255 - mean) / std`` per channel, as one multiply and one subtract."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if any(s <= 0 for s in self.std):
            from hairlab.errors import HairlabError

            raise HairlabError(f"normalization std must be positive, got {self.std}")
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _consts(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._cache:
            std = torch.tensor(self.std, dtype=torch.float32)
            mean = torch.tensor(self.mean, dtype=torch.float32)
            scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(device)
            shift = (mean / std).view(1, -1, 1, 1).to(device)
            self._cache[key] = (scale, shift)
        return self._cache[key]

    def __call__(self, x: torch.Tensor, memory_format: Any = None) -> torch.Tensor:
        """A float32 batch from a uint8 batch, optionally in ``memory_format``."""
        scale, shift = self._consts(x.device)
        if memory_format is not None:
            x = x.contiguous(memory_format=memory_format)
        out = x.to(torch.float32)
        return out.mul_(scale).sub_(shift)


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of a uint8 ``(N, C, H, W)`` tensor, in [0, 1] units.

    Computed exactly from a 256-bin histogram per channel: 50,000 CIFAR images take under a
    second, where float64 sums over chunks took four, and nothing large is allocated but
    one channel's copy at a time.
    """
    c = x.shape[1]
    if x.shape[0] == 0:
        return [0.0] * c, [1.0] * c
    levels = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for ch in range(c):
        hist = torch.bincount(x[:, ch].reshape(-1), minlength=256).to(torch.float64)
        count = hist.sum()
        mean = (hist * levels).sum() / count
        var = (hist * (levels - mean).square()).sum() / count
        std = float(var.sqrt())
        means.append(float(mean) / 255.0)
        stds.append(std / 255.0 if std > 0 else 1.0)  # a constant channel is left unscaled
    return means, stds
