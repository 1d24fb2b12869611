"""The ``cifar10`` dataset: four on-disk forms, decoded once into a cached uint8 tensor file.

Under the data root it looks for, in this order:

1. ``cifar-10-batches-py/`` (the official python batches, already extracted);
2. ``cifar-10-python.tar.gz`` (the official archive, read without extracting);
3. a class-folder tree ``train/<class>/*``, ``test/<class>/*`` (the root itself, or a
   sub-directory whose name contains ``cifar``);
4. a tarball of such a tree (a ``*cifar*.tar.gz|.tgz|.tar`` file, e.g. the JPEG copy in
   ``../shared/data/cifar10-jpg.tar.gz``).

The root may also be one of these archives itself. When nothing is found and ``download``
is on, the official archive is fetched and its MD5 checked; offline, one line says where it
looked, what it accepts, and how to point elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hairlab.data.cache import (
    ARCHIVE_ERRORS,
    CACHE_VERSION,
    archive_error,
    atomic_path,
    file_digest,
    fingerprint,
    is_archive_name,
    load_tensors,
    locked,
    save_tensors,
)
from hairlab.data.paths import ENV_DATA, cache_dir, data_root
from hairlab.errors import HairlabError

log = logging.getLogger("hairlab.data")

#: CIFAR-10's label order (batches.meta of the official release).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCHES_DIR = "cifar-10-batches-py"
OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
FORMS = (f"{BATCHES_DIR}/, {OFFICIAL_ARCHIVE}, a class-folder tree (train/<class>/*, test/<class>/*) "
         "or a *cifar*.tar.gz/.tgz/.tar of one")


@dataclass(frozen=True)
class Source:
    """A located copy of CIFAR-10: ``kind`` is batches, official-archive, tree or tree-archive."""

    kind: str
    path: Path


# -- locating ---------------------------------------------------------------------------------
def _is_tree(d: Path) -> bool:
    return (d / "train").is_dir() and (d / "test").is_dir()


def _cifar10_name(name: str) -> bool:
    low = name.lower()
    return "cifar" in low and "cifar-100" not in low and "cifar100" not in low


def _classify_archive(path: Path) -> Source:
    """An archive is the official one if it holds ``cifar-10-batches-py/``, else a tree."""
    if path.name == OFFICIAL_ARCHIVE:
        return Source("official-archive", path)
    try:
        with tarfile.open(path) as tf:
            first = tf.next()
    except ARCHIVE_ERRORS as exc:
        raise archive_error(path, exc) from None
    if first is not None and first.name.lstrip("./").startswith(BATCHES_DIR):
        return Source("official-archive", path)
    return Source("tree-archive", path)


def find_source(root: Path) -> Source | None:
    """The first accepted form found at ``root`` (a directory or an archive file)."""
    if root.is_file():
        if not is_archive_name(root):
            raise HairlabError(f"dataset root {root} is a file but not a tar archive; accepted: {FORMS}")
        return _classify_archive(root)
    if not root.is_dir():
        return None
    if (root / BATCHES_DIR / TRAIN_BATCHES[0]).is_file():
        return Source("batches", root / BATCHES_DIR)
    if (root / "data_batch_1").is_file() and (root / TEST_BATCH).is_file():  # pointed inside it
        return Source("batches", root)
    if (root / OFFICIAL_ARCHIVE).is_file():
        return Source("official-archive", root / OFFICIAL_ARCHIVE)
    if _is_tree(root):
        return Source("tree", root)
    entries = sorted(root.iterdir())
    for d in entries:
        if d.is_dir() and _cifar10_name(d.name) and _is_tree(d):
            return Source("tree", d)
    for f in entries:
        if f.is_file() and is_archive_name(f) and _cifar10_name(f.name):
            return _classify_archive(f)
    return None


# -- official python batches ------------------------------------------------------------------
class _BatchUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings only: a batch file never runs code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def parse_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` from one pickled batch."""
    import io

    def bad(reason: str) -> HairlabError:
        return HairlabError(f"{where} is not a CIFAR-10 python batch ({reason}); replace it with the file "
                            f"from the official {OFFICIAL_ARCHIVE}")

    try:
        obj = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise bad(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from None
    if not isinstance(obj, dict):
        raise bad(f"holds a {type(obj).__name__}, not a dict")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in d or "labels" not in d:
        raise bad(f"keys {sorted(map(str, d))} lack 'data' and 'labels'")
    x, labels = d["data"], d["labels"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        shape = getattr(x, "shape", None)
        raise bad(f"'data' is {type(x).__name__} {shape} {getattr(x, 'dtype', '')}, expected uint8 (N, 3072)")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (x.shape[0],) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise bad(f"{y.size} labels in {y.min() if y.size else 0}..{y.max() if y.size else 0} "
                  f"for {x.shape[0]} images")
    return x.reshape(-1, 3, 32, 32), y


def load_batches_dir(d: Path) -> dict[str, Any]:
    arrays: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    for split, names in (("train", TRAIN_BATCHES), ("test", (TEST_BATCH,))):
        for name in names:
            f = d / name
            if not f.is_file():
                raise HairlabError(f"{f} is missing; restore it from the official {OFFICIAL_ARCHIVE}")
            arrays[split].append(parse_batch(f.read_bytes(), str(f)))
    return _join(arrays)


def load_official_archive(path: Path) -> dict[str, Any]:
    """Read the batches straight out of the official archive (no extraction needed)."""
    wanted = {f"{BATCHES_DIR}/{n}": n for n in (*TRAIN_BATCHES, TEST_BATCH)}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path) as tf:
            for m in tf:
                name = wanted.get(m.name.lstrip("./"))
                if name is not None and m.isfile():
                    fh = tf.extractfile(m)
                    found[name] = parse_batch(fh.read() if fh else b"", f"{path}:{m.name}")
    except ARCHIVE_ERRORS as exc:
        raise archive_error(path, exc) from None
    missing = [n for n in wanted.values() if n not in found]
    if missing:
        raise HairlabError(f"archive {path} lacks {BATCHES_DIR}/{missing[0]}; it is not the official "
                           f"{OFFICIAL_ARCHIVE} or it is truncated: replace it")
    return _join({"train": [found[n] for n in TRAIN_BATCHES], "test": [found[TEST_BATCH]]})


def _join(arrays: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, Any]:
    return {split: (np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]))
            for split, parts in arrays.items()}


# -- class-folder trees -----------------------------------------------------------------------
def load_tree(source: Source, workers: int) -> dict[str, Any]:
    from hairlab.data.images import decode_tree, scan_dir

    tree = scan_dir(source.path, ("train", "test")) if source.kind == "tree" else None
    decoded = decode_tree(source.path, ("train", "test"), 32, workers=workers, tree=tree)
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        part = decoded.get(split)
        if part is None:
            raise HairlabError(f"no images under {split}/<class>/ in {source.path}; accepted: {FORMS}")
        found = sorted(set(part.class_names))
        if set(found) != set(CLASSES):
            extra = sorted(set(found) - set(CLASSES))
            lacking = sorted(set(CLASSES) - set(found))
            raise HairlabError(
                f"{source.path} {split}/ has class folders {found}; cifar10 needs exactly {list(CLASSES)} "
                f"(unexpected: {extra}, missing: {lacking}); use dataset=imagefolder for other class sets"
            )
        out[split] = part.ordered_nchw(CLASSES)
    return out


# -- downloading ------------------------------------------------------------------------------
class Unreachable(Exception):
    """The download server could not be reached (offline): reported as "not found"."""


def fetch_official(url: str, md5: str | None, dest_dir: Path, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``dest_dir/cifar-10-python.tar.gz``, checking its MD5.

    The file appears under its final name only once complete and verified.
    """
    dest = dest_dir / OFFICIAL_ARCHIVE
    log.info("downloading %s to %s", url, dest)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            h = hashlib.md5()
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
                    while block := resp.read(1 << 20):
                        h.update(block)
                        fh.write(block)
            except urllib.error.HTTPError as exc:
                raise Unreachable(f"HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                raise Unreachable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
            if md5 and h.hexdigest() != md5.lower():
                raise HairlabError(f"checksum mismatch for {url}: md5 {h.hexdigest()}, expected {md5}; "
                                   "the download was discarded (retry, or fetch the file by hand)")
    except PermissionError as exc:
        raise HairlabError(f"cannot write the download to {dest_dir}: {exc}; set dataset.root=DIR") from None
    return dest


# -- the DataModule ---------------------------------------------------------------------------
def _load_source(source: Source, workers: int) -> dict[str, Any]:
    if source.kind == "batches":
        return load_batches_dir(source.path)
    if source.kind == "official-archive":
        return load_official_archive(source.path)
    return load_tree(source, workers)


def load_cached(source: Source, workers: int = 2) -> dict[str, Any]:
    """The decoded tensors of ``source``, from the cache or decoded now and cached."""
    key = fingerprint(source.path)
    path = cache_dir() / "tensors" / f"cifar10-{source.kind}-{key}.pt"
    cached = load_tensors(path)
    if cached is None:
        with locked(path.stem):  # parallel jobs: one decodes, the others wait for its file
            cached = load_tensors(path)
            if cached is None:
                return _decode_into(path, source, key, workers)
    cached["cache_hit"] = True
    cached["cache_file"] = str(path)
    return cached


def _decode_into(path: Path, source: Source, key: str, workers: int) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    log.info("decoding CIFAR-10 from %s (%s) into %s; later runs load the cache",
             source.path, source.kind, path)
    arrays = _load_source(source, workers)
    obj: dict[str, Any] = {
        "cache_version": CACHE_VERSION,
        "train_x": torch.from_numpy(arrays["train"][0]), "train_y": torch.from_numpy(arrays["train"][1]),
        "test_x": torch.from_numpy(arrays["test"][0]), "test_y": torch.from_numpy(arrays["test"][1]),
        "classes": list(CLASSES), "format": source.kind, "source": str(source.path),
        "source_sha256": file_digest(source.path) if source.path.is_file() else "",
        "source_fingerprint": key, "decode_s": round(time.perf_counter() - t0, 3),
    }
    save_tensors(obj, path)
    obj["cache_file"] = str(path)
    obj["cache_hit"] = False
    return obj


def not_found(root: Path, how: str, reason: str) -> HairlabError:
    return HairlabError(
        f"cifar10: no CIFAR-10 data at {root} (from {how}) and {reason}; accepted forms: {FORMS}; "
        f"point elsewhere with dataset.root=PATH or {ENV_DATA}=PATH (e.g. {ENV_DATA}=../shared/data)"
    )


def locate(root: Any, download: bool, url: str, md5: str | None) -> Source:
    """The data's source: found under the data root, or downloaded there now (``download``)."""
    base, how = data_root(root)
    source = find_source(base)
    if source is not None:
        return source
    if not download:
        raise not_found(base, how, "dataset.download=false")
    try:
        return Source("official-archive", fetch_official(url, md5, base))
    except Unreachable as exc:
        raise not_found(base, how, f"downloading {url} failed ({exc})") from None


def preflight(*, root: Any, download: bool, url: str, md5: str | None, **_: Any) -> None:
    """Before any run exists: the data is there (or fetched now), so no job fails for want of it."""
    locate(root, download, url, md5)


def build(*, num_classes: int, image_size: int, root: Any, train_size: int | None, test_size: int | None,
          val_size: int | float, crop_padding: int, pad_mode: str = "zeros", hflip: bool | str, cutout: int = 0,
          normalize: bool, mean: list[float] | None, std: list[float] | None,
          download: bool, url: str, md5: str | None, workers: int) -> Any:
    """A :class:`~hairlab.data.tensor.TensorDataModule` of CIFAR-10 (options: ``Cifar10Options``)."""
    from hairlab.data.tensor import TensorDataModule

    t0 = time.perf_counter()
    source = locate(root, download, url, md5)
    data = load_cached(source, workers=workers)
    extra = {
        "source": str(source.path), "format": data["format"], "source_sha256": data["source_sha256"],
        "source_fingerprint": data["source_fingerprint"], "cache_hit": data["cache_hit"],
        "first_decode_s": data["decode_s"], "cache_file": data["cache_file"],
        "order": "official" if data["format"] in ("batches", "official-archive") else "fixed shuffle, seed 0",
    }
    dm = TensorDataModule(
        "cifar10", train=(data["train_x"], data["train_y"]), test=(data["test_x"], data["test_y"]),
        num_classes=10, classes=data["classes"], train_size=train_size, test_size=test_size,
        val_size=val_size, crop_padding=crop_padding, pad_mode=pad_mode, hflip=hflip, cutout=cutout,
        normalize=normalize, mean=mean, std=std, extra_info=extra,
    )
    dm.note(load_s=round(time.perf_counter() - t0, 3))  # locate + cache/decode + statistics
    return dm
