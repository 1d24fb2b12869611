"""The in-memory DataModule: each split is one uint8 tensor, batches are made on the device.

Splits are taken from the source arrays in a fixed way so that smoke-sized runs are fair and
repeatable: the validation split is the *last* ``val_size`` examples of the source training
set (so it does not move when ``train_size`` changes), the training split is the *first*
``train_size`` of the rest, and the test split is the first ``test_size`` test examples.
Dataset plugins store their examples in a fixed shuffled order, so "the first N" is a fair
subset of all classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from hairlab.data.augment import channel_stats
from hairlab.data.base import BaseDataModule, check_size, split_indices, val_count
from hairlab.errors import HairlabError

__all__ = ["Batches", "TensorDataModule", "check_size", "cpu_threads", "split_indices", "val_count"]


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run the enclosed CPU ops with ``threads`` intra-op threads, then restore the setting.

    Batch assembly is a handful of small memory-bound ops. On a 2-core machine shared with
    other jobs, each multi-threaded op waits for a second core to be scheduled: measured
    here, 900 img/s with 2 threads against 40,000 img/s with 1 (tests/benchmarks/
    bench_data.py). One thread costs little when the machine is idle. Changing the
    setting takes well under a microsecond; it is restored before the batch reaches the
    model.
    """
    if threads is None or device.type != "cpu" or torch.get_num_threads() == threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Batches:
    """A re-iterable sequence of batches with a length (for progress bars and ETAs)."""

    def __init__(self, length: int, make: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        self._length = length
        self._make = make

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._make()


class TensorDataModule(BaseDataModule):
    """A dataset held in memory as uint8 tensors ``(N, C, H, W)`` with int64 labels."""

    def __init__(
        self,
        name: str,
        *,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        num_classes: int,
        classes: Sequence[str] | None = None,
        train_size: int | None = None,
        test_size: int | None = None,
        val_size: int | float = 0,
        crop_padding: int = 0,
        hflip: bool | str = False,
        pad_mode: str = "zeros",
        cutout: int = 0,
        normalize: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        extra_info: dict[str, Any] | None = None,
    ) -> None:
        (xtr, ytr), (xte, yte) = train, test
        for x, y, split in ((xtr, ytr, "train"), (xte, yte, "test")):
            if x.dtype != torch.uint8 or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"{name} {split}: expected uint8 (N,C,H,W) and (N,) labels, "
                                 f"got {tuple(x.shape)} {x.dtype} and {tuple(y.shape)}")
        if xtr.shape[1:] != xte.shape[1:]:
            raise ValueError(
                f"{name}: train and test shapes differ: {tuple(xtr.shape)} vs {tuple(xte.shape)}"
            )
        super().__init__(name, num_classes=num_classes, input_shape=tuple(xtr.shape[1:]), classes=classes,
                         crop_padding=crop_padding, hflip=hflip, pad_mode=pad_mode, cutout=cutout,
                         extra_info=extra_info)
        sl = self.carve(len(xtr), len(xte), train_size=train_size, test_size=test_size, val_size=val_size)
        self.splits = {
            "train": (xtr[sl["train"]], ytr[sl["train"]].long()),
            "val": (xtr[sl["val"]], ytr[sl["val"]].long()),
            "test": (xte[sl["test"]], yte[sl["test"]].long()),
        }
        labels = torch.cat([ytr, yte]) if len(ytr) + len(yte) else ytr
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise HairlabError(
                f"{name}: labels range over {int(labels.min())}..{int(labels.max())} but "
                f"dataset.num_classes={self.num_classes}"
            )
        self.set_normalization(normalize=normalize, mean=mean, std=std,
                               measure=lambda: channel_stats(self.splits["train"][0]))
        self._device_cache: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}

    # -- contract (num_examples, info and note come from BaseDataModule) -------------------
    def count(self, examples: tuple[torch.Tensor, torch.Tensor]) -> int:
        return len(examples[1])

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw uint8 images and labels of ``split`` (tests, reports)."""
        return self.splits[split]

    def _on(self, device: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        dev = torch.device(device)
        if dev.type == "cpu":
            return self.splits[split]
        cache = self._device_cache.setdefault(str(dev), {})
        if split not in cache:  # moved once, then every epoch indexes it there
            x, y = self.splits[split]
            cache[split] = (x.to(dev), y.to(dev))
        return cache[split]

    def train_batches(self, batch_size: int, *, device: Any, generator: torch.Generator,
                      memory_format: Any = None, drop_last: bool | None = None, epoch: int | None = None
                      ) -> Batches:
        """One shuffled, augmented epoch.

        ``drop_last=None`` (the default) drops only a trailing batch of a single example,
        which BatchNorm cannot train on; ``True``/``False`` drop every/no partial batch.
        ``epoch`` (1-based) is the epoch this is, for augmentations that depend on it (the
        alternating flip); None counts the iterations (:meth:`BaseDataModule.epoch_number`).
        """
        length = self.epoch_length(batch_size, drop_last)
        x, y = self._on(device, "train")
        n = len(y)

        flat, shape = x.reshape(n, -1), x.shape[1:]

        def make() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            number = self.epoch_number(epoch)
            perm = torch.randperm(n, generator=generator)
            for i in range(length):
                with cpu_threads(x.device, self.cpu_threads):
                    which = perm[i * batch_size:(i + 1) * batch_size]
                    idx = which.to(x.device)
                    xb = flat.index_select(0, idx).view(-1, *shape)  # faster than x[idx] for uint8
                    xb = self.augment(xb, which, generator=generator, epoch=number)
                    batch = self.normalizer(xb, memory_format), y[idx]
                yield batch

        return Batches(length, make)

    def eval_batches(self, split: str, batch_size: int, *, device: Any, memory_format: Any = None) -> Batches:
        """Batches of ``split`` in order, without augmentation."""
        self.check_eval_split(split)
        x, y = self._on(device, split)
        n = len(y)
        length = -(-n // batch_size)

        def make() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for i in range(length):
                sl = slice(i * batch_size, (i + 1) * batch_size)
                with cpu_threads(x.device, self.cpu_threads):
                    batch = self.normalizer(x[sl], memory_format), y[sl]
                yield batch

        return Batches(length, make)
