"""The dataset contract between dataset plugins and the training engine.

A dataset plugin's factory returns a :class:`DataModule`. The engine never sees files or
decoders: it asks for batches already on the training device, normalized, and (for
training) augmented. Small-image datasets hold each split in memory as one uint8 tensor and
augment per batch on the device, which is what makes CPU training fast
(:class:`hairlab.data.tensor.TensorDataModule`).

A plugin's DataModule can subclass :class:`hairlab.data.base.BaseDataModule` (``hairlab.api``),
which gives the parts every dataset shares: the split rule, normalization statistics, the
drop-last rule and ``info()``. Shared machinery lives in small modules beside this one:
``base``, ``paths`` (root and cache
resolution), ``cache`` (checksums, atomic files, archive extraction), ``images`` (decoding
image trees and tarballs into uint8 tensors), ``augment`` (crop/flip/normalize on tensors),
``tensor`` (the in-memory DataModule) and ``stream`` (a DataLoader-backed DataModule for
images too large to keep in memory). None of them imports torch at module import time
except ``augment``, ``tensor`` and ``stream``, which only dataset factories import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

SPLITS = ("train", "val", "test")


@runtime_checkable
class DataModule(Protocol):
    """A dataset ready for training and evaluation.

    The iterables returned by :meth:`train_batches` and :meth:`eval_batches` also support
    ``len()`` (number of batches), so the engine can show an ETA. Batches are float32 in
    NCHW layout unless the caller passes ``memory_format=torch.channels_last`` (an optional
    keyword the built-in modules accept, which saves the engine one copy per batch).
    """

    #: Registry name of the dataset, e.g. ``cifar10``.
    name: str
    num_classes: int
    #: ``(channels, height, width)`` of one example as the model sees it.
    input_shape: tuple[int, int, int]

    def info(self) -> dict[str, Any]:
        """Facts worth tracking: sizes, checksum of the source, normalization statistics."""
        ...

    def num_examples(self, split: str) -> int:
        """Examples in ``split`` (0 when the split does not exist)."""
        ...

    def train_batches(self, batch_size: int, *, device: Any, generator: Any) -> Iterable[tuple[Any, Any]]:
        """One epoch of shuffled, augmented, normalized ``(x, y)`` batches on ``device``.

        ``generator`` is a CPU ``torch.Generator`` owned by the engine, so shuffling and
        augmentation are reproducible and resumable: every random draw of an epoch comes
        from it, in a fixed order, whatever the device. A module may also accept an
        ``epoch=`` keyword (1-based), which the engine then passes, for augmentation that
        depends on the epoch (``dataset.hflip=alternate``).
        """
        ...

    def eval_batches(self, split: str, batch_size: int, *, device: Any) -> Iterable[tuple[Any, Any]]:
        """Un-augmented, normalized ``(x, y)`` batches of ``split`` ("val" or "test")."""
        ...
