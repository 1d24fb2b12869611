"""Test-time augmentation: the logits an evaluation scores, averaged over transformed copies of a batch.

``trainer.tta`` picks the mode (``trainer.tta_flip=true`` is the older name of ``flip``):

- ``none``: the model's logits;
- ``flip``: the mean of the logits of each image and its mirror (2 forward passes);
- ``flip_translate``: airbench's mirror plus 1-pixel translations, ``0.5 * flip(x) + 0.25 *
  flip(x moved 1 px down-right) + 0.25 * flip(x moved 1 px up-left)``, the moved copies
  reflect-padded at the border (6 forward passes).

Each mode is a weighted list of views, so the logits are exactly the weighted mean of the model
on the transformed inputs (tests/test_tta.py computes it by hand). Views are evaluated one at a
time: the memory of an evaluation batch stays what it is without TTA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MODES = ("none", "flip", "flip_translate")


def resolve(tta: str, tta_flip: bool) -> str:
    """The mode in force: ``tta``, or ``flip`` when only the older ``tta_flip=true`` is set.

    Every mode but ``none`` includes the mirror, so ``tta_flip=true`` with another ``tta`` (an
    older config such as an experiment, overridden on the command line) is that mode.
    """
    if tta not in MODES:
        raise ValueError(f"tta={tta!r}: expected one of {', '.join(MODES)}")
    return "flip" if tta_flip and tta == "none" else tta


def _shift(x: Any, dy: int, dx: int) -> Any:
    """``x`` (N, C, H, W) moved by (dy, dx) pixels (|d| <= 1), the uncovered border reflected."""
    import torch.nn.functional as F

    h, w = x.shape[2], x.shape[3]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return padded[:, :, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def _moved(d: int, *, mirror: bool) -> Callable[[Any], Any]:
    """The view ``x`` moved by ``d`` pixels down and right (then mirrored)."""

    def view(x: Any) -> Any:
        moved = _shift(x, d, d)
        return moved.flip(3) if mirror else moved

    return view


def views(mode: str) -> list[tuple[float, Callable[[Any], Any]]]:
    """``(weight, transform)`` pairs of ``mode``; the weights sum to 1."""
    if mode == "none":
        return [(1.0, lambda x: x)]
    if mode == "flip":
        return [(0.5, lambda x: x), (0.5, lambda x: x.flip(3))]
    if mode == "flip_translate":
        out: list[tuple[float, Callable[[Any], Any]]] = [(0.25, lambda x: x), (0.25, lambda x: x.flip(3))]
        for d in (1, -1):
            out += [(0.125, _moved(d, mirror=False)), (0.125, _moved(d, mirror=True))]
        return out
    raise ValueError(f"tta={mode!r}: expected one of {', '.join(MODES)}")


def predict(model: Callable[[Any], Any], x: Any, mode: str) -> Any:
    """The float32 logits ``mode`` gives for batch ``x``: the weighted mean over its views."""
    import torch

    fmt = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) else None
    total = None
    for weight, view in views(mode):
        v = view(x)
        if fmt is not None and v is not x:
            v = v.contiguous(memory_format=fmt)
        logits = model(v).float()
        total = logits * weight if total is None else total.add_(logits, alpha=weight)
    return total
