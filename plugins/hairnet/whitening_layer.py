"""The torch module of the ``whiten`` block (options and entry: :mod:`.whitening`)."""

from __future__ import annotations

from collections import OrderedDict
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class PatchWhitening(nn.Sequential):
    """A ``patch_size`` convolution fitted to whiten its input's patches, then an activation.

    Layer names (``conv``, ``relu``/``gelu``) follow the other blocks, so the cost model reports
    it as the convolution it is.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, patch_size: int = 2,
                 padding: int = 0, eps: float = 5e-4, frozen: bool = True, negative: bool = True,
                 activation: str = "relu") -> None:
        dims = in_channels * patch_size * patch_size
        components = out_channels // 2 if negative else out_channels
        if (negative and out_channels % 2) or not 1 <= components <= dims:
            most = 2 * dims if negative else dims
            raise ValueError(f"block 'whiten' with {in_channels} input channels and patch_size={patch_size} "
                             f"whitens {dims}-value patches: its width must be {'even and ' if negative else ''}"
                             f"at most {most} (e.g. width: {most}), got {out_channels}")
        layers: list[tuple[str, nn.Module]] = [
            ("conv", nn.Conv2d(in_channels, out_channels, patch_size, stride=stride, padding=padding, bias=True))]
        if activation == "relu":
            layers.append(("relu", nn.ReLU(inplace=True)))
        elif activation == "gelu":
            layers.append(("gelu", nn.GELU()))
        super().__init__(OrderedDict(layers))
        self.patch_size, self.eps, self.negative, self.components = patch_size, eps, negative, components
        self._conv().weight.requires_grad_(not frozen)

    def _conv(self) -> nn.Conv2d:
        return cast(nn.Conv2d, self.conv)

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor) -> None:
        """Fit the filters to ``x``'s patches (every position, stride 1, no padding).

        Keeps the ``components`` leading eigenvectors of the patch covariance (all of them at
        the full width), scaled to unit variance; the bias centres the outputs (``-W @ mean``),
        so on ``x`` the pre-activation outputs have zero mean and identity covariance up to
        ``eigenvalue / (eigenvalue + eps)``. Computed in float64.
        """
        conv = self._conv()
        k = self.patch_size
        patches = F.unfold(x.detach().to(torch.float64), k).transpose(1, 2).reshape(-1, conv.in_channels * k * k)
        mean = patches.mean(0)
        centred = patches - mean
        cov = centred.T @ centred / max(len(patches) - 1, 1)
        values, vectors = torch.linalg.eigh(cov)  # ascending
        order = values.argsort(descending=True)[: self.components]
        w = vectors[:, order].T / (values[order].clamp_min(0) + self.eps).sqrt().unsqueeze(1)
        bias = -(w @ mean)
        if self.negative:
            w, bias = torch.cat([w, -w]), torch.cat([bias, -bias])
        conv.weight.copy_(w.reshape(conv.weight.shape).to(conv.weight.dtype))
        if conv.bias is not None:
            conv.bias.copy_(bias.to(conv.bias.dtype))
