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

from hairlab.data.augment import Normalizer, channel_stats, crop_flip
from hairlab.errors import HairlabError


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


def check_size(value: Any, key: str) -> int | None:
    """A ``train_size``/``test_size`` option: ``None`` (all) or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise HairlabError(f"dataset.{key} must be a positive integer or null (all), got {value!r}")
    return value


def val_count(val_size: Any, available: int) -> int:
    """``val_size`` as a count: an int, or a float fraction in (0, 1) of the training set."""
    if val_size is None or val_size == 0:
        return 0
    if isinstance(val_size, float) and 0 < val_size < 1:
        count = round(val_size * available)
    elif isinstance(val_size, int) and not isinstance(val_size, bool) and val_size > 0:
        count = val_size
    else:
        raise HairlabError(
            f"dataset.val_size must be a count (int >= 0) or a fraction in (0, 1), got {val_size!r}"
        )
    if count >= available:
        raise HairlabError(
            f"dataset.val_size={val_size} leaves no training examples (the training set has {available})"
        )
    return count


def split_indices(n_train: int, n_test: int, *, train_size: Any, test_size: Any,
                  val_size: Any) -> dict[str, slice]:
    """Slices of the source train/test arrays for the train, val and test splits."""
    tr, te = check_size(train_size, "train_size"), check_size(test_size, "test_size")
    nv = val_count(val_size, n_train)
    rest = n_train - nv
    return {
        "train": slice(0, rest if tr is None else min(tr, rest)),
        "val": slice(rest, n_train),
        "test": slice(0, n_test if te is None else min(te, n_test)),
    }


class TensorDataModule:
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
        hflip: bool = False,
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
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise HairlabError(f"dataset.crop_padding must be an integer >= 0, got {crop_padding!r}")
        self.name = name
        self.num_classes = int(num_classes)
        self.classes = list(classes) if classes is not None else [str(i) for i in range(self.num_classes)]
        self.input_shape: tuple[int, int, int] = tuple(int(s) for s in xtr.shape[1:])  # type: ignore[assignment]
        self.crop_padding = crop_padding
        self.hflip = bool(hflip)
        sl = split_indices(len(xtr), len(xte), train_size=train_size, test_size=test_size, val_size=val_size)
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
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
        channels = self.input_shape[0]
        if not normalize:  # pixels scaled to [0, 1] only
            mean, std, self.stats_source = [0.0] * channels, [1.0] * channels, "none"
        elif mean is None or std is None:
            cmean, cstd = channel_stats(self._splits["train"][0])
            self.stats_source = "train split" if mean is None and std is None else "train split + config"
            mean = cmean if mean is None else mean
            std = cstd if std is None else std
        else:
            self.stats_source = "config"
        if len(mean) != channels or len(std) != channels:
            raise HairlabError(
                f"dataset.mean and dataset.std need {channels} values, got {list(mean)} and {list(std)}"
            )
        self.normalizer = Normalizer(mean, std)
        self._extra = dict(extra_info or {})
        #: Intra-op threads for batch assembly on the CPU (``None``: torch's setting).
        self.cpu_threads: int | None = 1
        self._device_cache: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}

    # -- contract --------------------------------------------------------------------------
    def num_examples(self, split: str) -> int:
        pair = self._splits.get(split)
        return 0 if pair is None else len(pair[1])

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "input_shape": list(self.input_shape),
            "train_examples": self.num_examples("train"),
            "val_examples": self.num_examples("val"),
            "test_examples": self.num_examples("test"),
            "mean": [round(m, 6) for m in self.normalizer.mean],
            "std": [round(s, 6) for s in self.normalizer.std],
            "stats_from": self.stats_source,
            "crop_padding": self.crop_padding,
            "hflip": self.hflip,
            **self._extra,
        }

    def note(self, **facts: Any) -> None:
        """Add facts to :meth:`info` (e.g. the total load time, known only once built)."""
        self._extra.update(facts)

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw uint8 images and labels of ``split`` (tests, reports)."""
        return self._splits[split]

    def _on(self, device: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        dev = torch.device(device)
        if dev.type == "cpu":
            return self._splits[split]
        cache = self._device_cache.setdefault(str(dev), {})
        if split not in cache:  # moved once, then every epoch indexes it there
            x, y = self._splits[split]
            cache[split] = (x.to(dev), y.to(dev))
        return cache[split]

    def train_batches(self, batch_size: int, *, device: Any, generator: torch.Generator,
                      memory_format: Any = None, drop_last: bool | None = None) -> Batches:
        """One shuffled, augmented epoch.

        ``drop_last=None`` (the default) drops only a trailing batch of a single example,
        which BatchNorm cannot train on; ``True``/``False`` drop every/no partial batch.
        """
        x, y = self._on(device, "train")
        n = len(y)
        if n == 0:
            raise HairlabError(f"{self.name}: the training split is empty")
        full, rem = divmod(n, batch_size)
        keep_tail = rem > 0 and (drop_last is False or (drop_last is None and rem > 1))
        length = full + int(keep_tail)

        flat, shape = x.reshape(n, -1), x.shape[1:]

        def make() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            perm = torch.randperm(n, generator=generator)
            for i in range(length):
                with cpu_threads(x.device, self.cpu_threads):
                    idx = perm[i * batch_size:(i + 1) * batch_size].to(x.device)
                    xb = flat.index_select(0, idx).view(-1, *shape)  # faster than x[idx] for uint8
                    xb = crop_flip(xb, padding=self.crop_padding, hflip=self.hflip, generator=generator)
                    batch = self.normalizer(xb, memory_format), y[idx]
                yield batch

        return Batches(length, make)

    def eval_batches(self, split: str, batch_size: int, *, device: Any, memory_format: Any = None) -> Batches:
        """Batches of ``split`` in order, without augmentation."""
        if split not in ("val", "test"):
            raise HairlabError(f"eval split must be 'val' or 'test', got {split!r}")
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
