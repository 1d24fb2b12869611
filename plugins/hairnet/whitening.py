"""The ``whiten`` block: airbench's patch-whitening stem, a convolution fitted to the training data.

Its filters are the eigenvectors of the covariance of the training images' ``patch_size``
patches, each scaled by ``1 / sqrt(eigenvalue + eps)``, so the outputs on those images are
decorrelated with unit variance (whitened); with ``negative=true`` each filter also comes
negated, so that the activation keeps both signs of every component. The fit runs through the
block contract's ``init_from_batch`` hook (docs/plugins.md) on the first training batch,
before step 1; a resumed run takes the fitted weights from its checkpoint. ``frozen=true``
(airbench) keeps the fitted filters fixed and trains only the bias.

No torch here: the module lives in :mod:`.whitening_layer`, imported when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hairlab.contract.schema import opt
from hairlab.registry import Entry

ACTIVATIONS = ("relu", "gelu", "none")


@dataclass
class WhitenOptions:
    """Options of ``whiten``; the stage's ``width`` is its output channels (2 x components with negatives)."""

    patch_size: int = opt(2, "patch (kernel) size: the filters whiten patch_size x patch_size patches")
    padding: int = opt(0, "convolution padding (airbench: 0, so 32x32 becomes 31x31)")
    eps: float = opt(5e-4, "added to each eigenvalue before the 1/sqrt scaling (bounds the gain of flat "
                           "directions)")
    frozen: bool = opt(True, "keep the fitted filters fixed (the bias still trains)")
    negative: bool = opt(True, "each filter and its negation (width = 2 x components)")
    activation: Literal["relu", "gelu", "none"] = opt("relu", "after the convolution: relu, gelu (airbench) or none")

    def __post_init__(self) -> None:
        if self.patch_size < 1:
            raise ValueError(f"patch_size={self.patch_size}: expected an integer >= 1")
        if self.padding < 0:
            raise ValueError(f"padding={self.padding}: expected an integer >= 0")
        if not self.eps > 0:
            raise ValueError(f"eps={self.eps}: expected a number > 0")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: expected relu, gelu or none")


def whiten(in_channels: int, out_channels: int, *, stride: int = 1, **options: Any) -> Any:
    from hairlab_plugins.hairnet.whitening_layer import PatchWhitening

    return PatchWhitening(in_channels, out_channels, stride=stride, **options)


def whiten_entry() -> Entry:
    """The block entry (listed by the hairnet plugin's ``hairlab_blocks``)."""
    return Entry("whiten", whiten,
                 "Patch-whitening stem (airbench): conv filters fitted to whiten the first batch's patches.\n"
                 "Eigenvectors of the patch covariance over sqrt(eigenvalue + eps), with negatives; fitted by\n"
                 "init_from_batch before step 1, frozen by default (the bias trains).", WhitenOptions)
