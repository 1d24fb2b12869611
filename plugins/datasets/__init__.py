"""Built-in datasets: ``cifar10``, ``imagefolder`` and ``synthetic``.

Each schema below is the dataset's only definition of its options (types, defaults, ranges,
help); hairlab stores it in Hydra's ConfigStore as ``dataset/<name>``, so there is no YAML, and
checks a config against it before any data is loaded. Each factory imports its module (and
torch) only when a run asks for it, so listing plugins stays fast; the module's ``build``
receives every option as a keyword.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from hairlab import hookimpl
from hairlab.contract.schema import check, opt
from hairlab.registry import Entry


@dataclass
class DatasetOptions:
    """The options every built-in dataset shares: where, how much, augmentation, normalization."""

    num_classes: int = opt(10, "classes")
    image_size: int = opt(32, "images are image_size x image_size")
    root: Optional[str] = opt(None, "directory (or archive file) to look in; null = $HAIRLAB_DATA, else the cache")
    train_size: Optional[int] = opt(None, "null = all; N = the first N of a fixed shuffled order (a fair subset)")
    test_size: Optional[int] = opt(None, "null = all; N = the first N of the test split")
    val_size: Union[int, float] = opt(0, "count (or fraction < 1) carved from the end of the training set")
    crop_padding: int = opt(4, "random translation by up to this many pixels (a crop of the padded image), per "
                               "batch on the device (0 = off)")
    pad_mode: Literal["zeros", "reflect"] = opt("zeros", "how crop_padding fills the uncovered border: zeros, "
                                                         "or reflect (airbench)")
    hflip: Union[bool, str] = opt(True, "horizontal flip: true = random per example, alternate = each example "
                                        "flipped every other epoch (airbench), false = off")
    cutout: int = opt(0, "cutout: a square this many pixels wide per image set to the mean (0 = off)")
    normalize: bool = opt(True, "subtract mean, divide by std (per channel)")
    mean: Optional[list[float]] = opt(None, "per-channel mean; null = computed from the training split")
    std: Optional[list[float]] = opt(None, "per-channel std; null = computed from the training split")

    def __post_init__(self) -> None:
        for key in ("num_classes", "image_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: expected an integer >= 1")
        for key in ("train_size", "test_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key}={value}: expected an integer >= 1 or null (all)")
        if self.val_size < 0 or (isinstance(self.val_size, float) and self.val_size >= 1):
            raise ValueError(f"val_size={self.val_size}: expected a count >= 0 or a fraction in (0, 1)")
        for key in ("crop_padding", "cutout"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}={getattr(self, key)}: expected an integer >= 0")
        if str(self.hflip).lower() not in ("true", "false", "alternate"):
            raise ValueError(f"hflip={self.hflip!r}: expected true (random), false or alternate")


@dataclass
class Cifar10Options(DatasetOptions):
    """CIFAR-10: 32x32 RGB, 10 classes, 50,000 train / 10,000 test (docs/datasets.md)."""

    download: bool = opt(True, "fetch the official archive when nothing is found (needs network access)")
    url: str = opt("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "where to fetch it from")
    md5: Optional[str] = opt("c58f30108f718f92721af3b95e74349a", "checksum of the download; null = unchecked")
    workers: int = opt(2, "processes decoding images on the first run (then cached)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes != 10:
            raise ValueError(f"num_classes={self.num_classes}: cifar10 has 10 classes")
        if self.image_size != 32:
            raise ValueError(f"image_size={self.image_size}: cifar10 images are 32x32 "
                             "(dataset=imagefolder resizes other trees)")
        if self.workers < 0:
            raise ValueError(f"workers={self.workers}: expected an integer >= 0 (0 = decode in this process)")


@dataclass
class ImageFolderOptions(DatasetOptions):
    """Any class-folder tree (ImageNet layout: train/<class>/*, val/<class>/*), directory or tarball."""

    num_classes: int = opt(1000, "must equal the number of train/ class folders (checked)")
    image_size: int = opt(224, "shorter side resized to this, then centre-cropped to a square")
    crop_padding: int = opt(0, "random translation by up to this many pixels (a crop of the padded image; "
                               "0 = off)")
    in_memory: Union[bool, str] = opt("auto", "keep decoded images in memory (and cached as a tensor file): "
                                              "auto = when they fit in max_memory_mb, true, false")
    max_memory_mb: int = opt(2048, "the in_memory=auto limit")
    workers: int = opt(2, "decoding processes (first decode, or every epoch when streaming)")
    stats_images: int = opt(1000, "streaming only: training images sampled for mean/std")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.in_memory not in ("auto", True, False):
            raise ValueError(f"in_memory={self.in_memory!r}: expected auto, true or false")
        for key in ("max_memory_mb", "workers"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}={getattr(self, key)}: expected an integer >= 0")
        if self.stats_images < 1:
            raise ValueError(f"stats_images={self.stats_images}: expected an integer >= 1")


@dataclass
class SyntheticOptions(DatasetOptions):
    """Generated class-prototype images: no files, deterministic by ``seed`` (smoke tests, CI)."""

    channels: int = opt(3, "image channels")
    num_train: int = opt(1024, "size of the generated training set")
    num_test: int = opt(256, "size of the generated test set")
    noise: float = opt(48.0, "Gaussian noise (pixel units) around each class prototype, >= 0")
    seed: int = opt(0, "data seed, independent of the training seed")
    root: Optional[str] = opt(None, "unused (every dataset has it)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("channels", "num_train", "num_test"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: expected an integer >= 1")
        if self.noise < 0:
            raise ValueError(f"noise={self.noise}: expected a number >= 0")


def _factory(name: str, schema: type) -> Callable[..., Any]:
    """A factory that imports ``hairlab_plugins.datasets.<name>`` only when called.

    Options missing from a direct call (a notebook, a test) get the schema's defaults; hairlab's
    build path has checked them already, so the second check costs nothing.
    """

    def factory(**options: Any) -> Any:
        full = check(schema, options, where="dataset", owner=f"dataset '{name}'")
        return importlib.import_module(f"{__name__}.{name}").build(**full)

    factory.__name__ = f"build_{name}"
    return factory


def _preflight(name: str) -> Callable[..., None]:
    """The entry's pre-flight: ``hairlab_plugins.datasets.<name>.preflight``, imported when called.

    It finds the data (or fetches it, once, in the process that starts the sweep) without
    decoding it, so a missing dataset is one line before any run exists.
    """

    def preflight(**options: Any) -> None:
        importlib.import_module(f"{__name__}.{name}").preflight(**options)

    preflight.__name__ = f"preflight_{name}"
    return preflight


@hookimpl
def hairlab_datasets() -> list[Entry]:
    return [
        Entry("synthetic", _factory("synthetic", SyntheticOptions),
              "Random class-prototype images of any shape, deterministic by seed (smoke tests).\n"
              "Each class is a random image plus per-example noise, so a model can learn it.", SyntheticOptions),
        Entry("cifar10", _factory("cifar10", Cifar10Options),
              "CIFAR-10 (32x32, 10 classes): official batches or tarball, or a class-folder tree/tarball.\n"
              "Decoded once into a cached tensor file; downloaded with checksum when online.", Cifar10Options,
              preflight=_preflight("cifar10")),
        Entry("imagefolder", _factory("imagefolder", ImageFolderOptions),
              "Any train/<class>/*, val/<class>/* image tree or tarball (ImageNet layout), resized.\n"
              "Decoded once and held in memory when small; streamed by DataLoader workers when large.",
              ImageFolderOptions, preflight=_preflight("imagefolder")),
    ]
