"""The parts every DataModule shares, as a base class a dataset plugin can subclass.

A dataset plugin decides where examples come from and how a batch is made; everything else is
the same for all of them and lives here, so that every dataset splits, normalizes, counts and
reports itself the same way:

- **splits**: :meth:`BaseDataModule.carve` takes train/val/test from the source train and
  test sets by the fixed rule (validation = the *last* ``val_size`` training examples, so it
  does not move when ``train_size`` changes; train = the first ``train_size`` of the rest;
  test = the first ``test_size`` test examples);
- **statistics**: :meth:`BaseDataModule.set_normalization` (per-channel mean/std from the
  config, measured on the training split, or none);
- **the drop-last rule**: :meth:`BaseDataModule.epoch_length` drops only a trailing batch of
  a single example (BatchNorm cannot train on it) unless told otherwise;
- **info**: :meth:`BaseDataModule.info`, the facts a run logs as ``data.*`` tags (timings of
  this load, :data:`TIMINGS`, as ``data/*`` metrics);
- **digest**: :meth:`BaseDataModule.digest`, a cheap identity of one split (the source's
  identity from ``info()``, the split and its size: no image is hashed), which the run's MLflow
  dataset input carries.

No torch import at module level: importing the contract stays cheap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hairlab.errors import HairlabError

#: ``info()`` keys that describe this particular load, not the data (they differ between two
#: runs on the same data, so they are left out of a split's digest).
LOAD_FACTS = ("cache_hit", "cache_file", "load_s", "first_decode_s", "extracted_to", "in_memory", "decoded_mb")
#: ``info()`` keys that are timings of this load: a run logs them as ``data/<key>`` metrics.
TIMINGS = ("load_s", "first_decode_s")
#: ``info()`` keys that depend on the split sizes or on augmentation, not on the source.
_SPLIT_FACTS = ("train_examples", "val_examples", "test_examples", "mean", "std", "stats_from", "crop_padding",
                "hflip", "pad_mode", "cutout")
#: How the border uncovered by a translation (``crop_padding``) is filled.
PAD_MODES = ("zeros", "reflect")
#: ``dataset.hflip`` modes: off, random (a fresh coin per example and epoch), alternate (airbench's
#: derandomised flip: every example flipped on every other epoch, starting from a per-example coin).
FLIP_MODES = ("off", "random", "alternate")


def flip_mode(value: Any) -> str:
    """``dataset.hflip`` as one of :data:`FLIP_MODES` (``true`` = random, ``false`` = off)."""
    text = str(value).lower()
    mode = {"true": "random", "false": "off"}.get(text, text)
    if mode not in FLIP_MODES:
        raise HairlabError(f"dataset.hflip={value!r}: expected true (random), false (off) or alternate")
    return mode


def source_identity(info: Mapping[str, Any]) -> str:
    """A short digest of what identifies the source data in ``info`` (load facts left out)."""
    stable = {k: v for k, v in info.items() if k not in LOAD_FACTS and k not in _SPLIT_FACTS}
    text = json.dumps(stable, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_digest(identity: str, split: str, count: int) -> str:
    """The digest of one split: with the fixed split rule, the source and the size decide its examples."""
    return hashlib.sha256(f"{identity}\0{split}\0{count}".encode()).hexdigest()[:10]


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
    """Slices of the source train/test sets for the train, val and test splits."""
    tr, te = check_size(train_size, "train_size"), check_size(test_size, "test_size")
    nv = val_count(val_size, n_train)
    rest = n_train - nv
    return {
        "train": slice(0, rest if tr is None else min(tr, rest)),
        "val": slice(rest, n_train),
        "test": slice(0, n_test if te is None else min(te, n_test)),
    }


def epoch_length(n: int, batch_size: int, drop_last: bool | None = None) -> int:
    """Batches in one training epoch of ``n`` examples.

    ``drop_last=None`` drops only a trailing batch of a single example, which BatchNorm
    cannot train on; ``True``/``False`` drop every/no partial batch.
    """
    full, rem = divmod(n, batch_size)
    keep_tail = rem > 0 and (drop_last is False or (drop_last is None and rem > 1))
    return full + int(keep_tail)


class BaseDataModule:
    """Splits, normalization statistics, the drop-last rule and ``info()`` for a DataModule.

    A subclass stores each split's examples in ``self.splits`` (``"train"``, ``"val"``,
    ``"test"``; anything :meth:`count` can size), calls :meth:`set_normalization`, and
    implements ``train_batches`` and ``eval_batches`` of :class:`hairlab.data.DataModule`,
    using :meth:`epoch_length`, :meth:`check_eval_split` and ``self.normalizer``.
    """

    def __init__(self, name: str, *, num_classes: int, input_shape: Sequence[int],
                 classes: Sequence[str] | None = None, crop_padding: int = 0, hflip: bool | str = False,
                 pad_mode: str = "zeros", cutout: int = 0, extra_info: dict[str, Any] | None = None) -> None:
        for key, value in (("crop_padding", crop_padding), ("cutout", cutout)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise HairlabError(f"dataset.{key} must be an integer >= 0, got {value!r}")
        if pad_mode not in PAD_MODES:
            raise HairlabError(f"dataset.pad_mode={pad_mode!r}: expected one of {', '.join(PAD_MODES)}")
        self.name = name
        self.num_classes = int(num_classes)
        self.classes = list(classes) if classes is not None else [str(i) for i in range(self.num_classes)]
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3:
            raise ValueError(f"{name}: input_shape must be (channels, height, width), got {shape}")
        self.input_shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        if pad_mode == "reflect" and crop_padding >= min(shape[1:]):
            raise HairlabError(f"dataset.crop_padding={crop_padding} with pad_mode=reflect needs images larger "
                               f"than the padding ({shape[1]}x{shape[2]}); lower it or use pad_mode=zeros")
        self.crop_padding = crop_padding
        #: the flip mode (:data:`FLIP_MODES`); ``hflip`` keeps the option's value for ``info()``
        self.flip = flip_mode(hflip)
        self.hflip: bool | str = self.flip if self.flip == "alternate" else self.flip == "random"
        self.pad_mode = pad_mode
        self.cutout = cutout
        self._epoch = 0  # the epoch the last train_batches iteration ran, when the caller gives none
        self._coins: tuple[int, int, Any] | None = None  # (seed, n, per-example coins) of the alternating flip
        #: Intra-op threads for batch assembly on the CPU (``None``: torch's setting); see
        #: :func:`hairlab.data.tensor.cpu_threads`.
        self.cpu_threads: int | None = 1
        self.splits: dict[str, Any] = {}
        self.normalizer: Any = None
        self.stats_source = ""
        self._extra = dict(extra_info or {})

    # -- splits ----------------------------------------------------------------------------
    @staticmethod
    def carve(n_train: int, n_test: int, *, train_size: Any, test_size: Any, val_size: Any) -> dict[str, slice]:
        """The fixed split rule (see the module docstring) as slices of the source sets."""
        return split_indices(n_train, n_test, train_size=train_size, test_size=test_size, val_size=val_size)

    def count(self, examples: Any) -> int:
        """Examples in one stored split (override when a split is not a plain sequence)."""
        return len(examples)

    def num_examples(self, split: str) -> int:
        """Examples in ``split`` (0 when the split does not exist)."""
        examples = self.splits.get(split)
        return 0 if examples is None else self.count(examples)

    def epoch_length(self, batch_size: int, drop_last: bool | None = None) -> int:
        """Training batches per epoch, by the drop-last rule; an empty training split is an error."""
        n = self.num_examples("train")
        if n == 0:
            raise HairlabError(f"{self.name}: the training split is empty")
        return epoch_length(n, batch_size, drop_last)

    @staticmethod
    def check_eval_split(split: str) -> None:
        if split not in ("val", "test"):
            raise HairlabError(f"eval split must be 'val' or 'test', got {split!r}")

    # -- statistics ------------------------------------------------------------------------
    def set_normalization(self, *, normalize: bool, mean: Sequence[float] | None, std: Sequence[float] | None,
                          measure: Callable[[], tuple[Sequence[float], Sequence[float]]],
                          measured_from: str = "train split") -> None:
        """Per-channel normalization: from the config, measured (``measure()``), or off.

        ``measure`` is called only when the config leaves mean or std unset; it returns the
        training split's per-channel mean and std in [0, 1] units (as
        :func:`hairlab.data.augment.channel_stats` gives them).
        """
        from hairlab.data.augment import Normalizer

        channels = self.input_shape[0]
        if not normalize:  # pixels scaled to [0, 1] only
            mean, std, self.stats_source = [0.0] * channels, [1.0] * channels, "none"
        elif mean is None or std is None:
            cmean, cstd = measure()
            self.stats_source = measured_from if mean is None and std is None else f"{measured_from} + config"
            mean = cmean if mean is None else mean
            std = cstd if std is None else std
        else:
            self.stats_source = "config"
        if len(mean) != channels or len(std) != channels:
            raise HairlabError(
                f"dataset.mean and dataset.std need {channels} values, got {list(mean)} and {list(std)}"
            )
        self.normalizer = Normalizer(mean, std)

    # -- augmentation ----------------------------------------------------------------------
    def epoch_number(self, epoch: int | None) -> int:
        """The 1-based epoch a ``train_batches`` iteration runs: the caller's, else one more than the last.

        The engine passes its own epoch, so a resumed run's epoch k is augmented as the
        uninterrupted run's was; a caller that passes none gets 1, 2, ... per iteration.
        """
        self._epoch = self._epoch + 1 if epoch is None else int(epoch)
        return self._epoch

    def _flip_coins(self, generator: Any, n: int) -> Any:
        """Each training example's first flip (a bool per example) for the alternating flip.

        Drawn from a generator of its own, seeded from the engine generator's seed (which a
        checkpoint's RNG state restores), so the coins are the run's on resume too and the
        engine generator's stream is not touched.
        """
        import torch

        seed = int(generator.initial_seed())
        if self._coins is None or self._coins[:2] != (seed, n):
            own = torch.Generator().manual_seed((seed * 6364136223846793005 + 1442695040888963407) % 2**63)
            self._coins = (seed, n, torch.rand(n, generator=own) < 0.5)
        return self._coins[2]

    def augment(self, x: Any, index: Any, *, generator: Any, epoch: int) -> Any:
        """The training augmentation of a uint8 batch ``x``: translate (crop), flip, cutout.

        ``index`` holds the batch's positions in the training split (the stable per-example
        identity the alternating flip needs), ``epoch`` the 1-based epoch. Random draws come
        from ``generator`` in the order crop offsets, flips (random mode only), cutout
        centres; options left at their defaults draw nothing.
        """
        from hairlab.data.augment import alternate_flips, crop_flip
        from hairlab.data.augment import cutout as cut

        flips = None
        if self.flip == "alternate":
            coins = self._flip_coins(generator, self.num_examples("train"))
            flips = alternate_flips(coins[index.to("cpu")], epoch)
        x = crop_flip(x, padding=self.crop_padding, hflip=self.flip == "random", generator=generator,
                      pad_mode=self.pad_mode, flips=flips)
        if self.cutout:
            x = cut(x, size=self.cutout, generator=generator, fill=self._fill())
        return x

    def _fill(self) -> Any:
        """Cutout's per-channel uint8 value: the normalization mean (zero once normalized)."""
        import torch

        mean = self.normalizer.mean if self.normalizer is not None else [0.0] * self.input_shape[0]
        return torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8)

    # -- info ------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Facts worth tracking: sizes, classes, normalization statistics, augmentation."""
        norm = self.normalizer
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "input_shape": list(self.input_shape),
            "train_examples": self.num_examples("train"),
            "val_examples": self.num_examples("val"),
            "test_examples": self.num_examples("test"),
            "mean": [round(m, 6) for m in norm.mean] if norm is not None else None,
            "std": [round(s, 6) for s in norm.std] if norm is not None else None,
            "stats_from": self.stats_source,
            "crop_padding": self.crop_padding,
            "hflip": self.hflip,
            "pad_mode": self.pad_mode,
            "cutout": self.cutout,
            **self._extra,
        }

    def digest(self, split: str) -> str:
        """A cheap identity of ``split`` (10 hex digits): the same source, split and size give the same digest.

        Computed from ``info()``'s source facts (paths, fingerprints, checksums the plugin
        reports), never from the images, so it costs nothing per run.
        """
        return split_digest(source_identity(self.info()), split, self.num_examples(split))

    def note(self, **facts: Any) -> None:
        """Add facts to :meth:`info` (e.g. the total load time, known only once built)."""
        self._extra.update(facts)
