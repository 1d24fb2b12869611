"""A DataModule for image trees too large to hold in memory: decode per batch in workers.

Files are decoded and resized to ``size x size`` uint8 by DataLoader worker processes;
crop, flip and normalization then run per batch on the training device with the same code
as the in-memory module, and all random draws (order, crops, flips) come from the engine's
generator in the main process, so an epoch is reproducible whatever the worker count.
Splits, statistics, the drop-last rule and ``info()`` come from :class:`hairlab.data.base.BaseDataModule`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from hairlab.data.base import BaseDataModule
from hairlab.data.images import decode_image
from hairlab.data.tensor import Batches, cpu_threads
from hairlab.errors import HairlabError


class ImageFiles(torch.utils.data.Dataset):
    """``(path, label)`` items as ``(uint8 (3, S, S), label, error)``.

    A file that fails to decode yields a blank image and its error text, so the main
    process can raise one clear line instead of a worker traceback.
    """

    def __init__(self, items: Sequence[tuple[str, int]], size: int) -> None:
        self.items = list(items)
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        path, label = self.items[i]
        try:
            arr = decode_image(path, self.size)
        except Exception as exc:  # noqa: BLE001 - reported by the main process, naming the file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), label, f"{path}: {reason}"
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous(), label, ""


def _check(errors: Sequence[str]) -> None:
    bad = next((e for e in errors if e), None)
    if bad:
        raise HairlabError(f"cannot decode image {bad}; replace or delete that file")


class StreamDataModule(BaseDataModule):
    """Images decoded from disk every epoch by ``workers`` DataLoader processes."""

    def __init__(self, name: str, *, train: Sequence[tuple[str, int]], test: Sequence[tuple[str, int]],
                 num_classes: int, size: int, classes: Sequence[str] | None = None,
                 train_size: int | None = None, test_size: int | None = None, val_size: int | float = 0,
                 crop_padding: int = 0, hflip: bool | str = False, pad_mode: str = "zeros", cutout: int = 0,
                 mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, normalize: bool = True, workers: int = 2,
                 stats_images: int = 1000, extra_info: dict[str, Any] | None = None) -> None:
        super().__init__(name, num_classes=num_classes, input_shape=(3, size, size), classes=classes,
                         crop_padding=crop_padding, hflip=hflip, pad_mode=pad_mode, cutout=cutout,
                         extra_info=extra_info)
        self.size = size
        self.workers = max(0, int(workers))
        sl = self.carve(len(train), len(test), train_size=train_size, test_size=test_size, val_size=val_size)
        self.splits = {"train": list(train[sl["train"]]), "val": list(train[sl["val"]]),
                       "test": list(test[sl["test"]])}
        sample = self.splits["train"][:stats_images]

        def measure() -> tuple[list[float], list[float]]:
            from hairlab.data.augment import channel_stats

            x = torch.cat([xb for xb, _ in self._raw(sample, 256)]) if sample else torch.zeros(0, 3, 1, 1)
            return channel_stats(x.to(torch.uint8))

        self.set_normalization(normalize=normalize, mean=mean, std=std, measure=measure,
                               measured_from=f"first {len(sample)} training images")

    def _loader(self, items: Sequence[tuple[str, int]], batch_size: int, order: Sequence[int] | None,
                pin: bool = False) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            ImageFiles(items, self.size), batch_size=batch_size, sampler=order, shuffle=False,
            num_workers=self.workers, pin_memory=pin, persistent_workers=False,
        )

    def _raw(self, items: Sequence[tuple[str, int]],
             batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb, errors in self._loader(items, batch_size, None):
            _check(errors)
            yield xb, yb

    # -- contract (num_examples and note come from BaseDataModule) ------------------------
    def info(self) -> dict[str, Any]:
        return {**super().info(), "in_memory": False, "workers": self.workers}

    def train_batches(self, batch_size: int, *, device: Any, generator: torch.Generator,
                      memory_format: Any = None, drop_last: bool | None = None, epoch: int | None = None
                      ) -> Batches:
        """One shuffled epoch; see :meth:`TensorDataModule.train_batches` for ``drop_last`` and ``epoch``."""
        length = self.epoch_length(batch_size, drop_last)
        items = self.splits["train"]
        n = len(items)
        dev = torch.device(device)

        def make() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            number = self.epoch_number(epoch)
            order = torch.randperm(n, generator=generator)[: length * batch_size]
            loader = self._loader(items, batch_size, order.tolist(), pin=dev.type == "cuda")
            for i, (xb, yb, errors) in enumerate(loader):
                _check(errors)
                with cpu_threads(dev, self.cpu_threads):
                    which = order[i * batch_size:(i + 1) * batch_size]
                    xb = self.augment(xb.to(dev, non_blocking=True), which, generator=generator, epoch=number)
                    batch = self.normalizer(xb, memory_format), yb.to(dev, non_blocking=True)
                yield batch

        return Batches(length, make)

    def eval_batches(self, split: str, batch_size: int, *, device: Any, memory_format: Any = None) -> Batches:
        self.check_eval_split(split)
        items = self.splits[split]
        dev = torch.device(device)

        def make() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for xb, yb in self._raw(items, batch_size):
                with cpu_threads(dev, self.cpu_threads):
                    batch = self.normalizer(xb.to(dev), memory_format), yb.to(dev)
                yield batch

        return Batches(-(-len(items) // batch_size), make)
