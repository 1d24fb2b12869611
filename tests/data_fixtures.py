"""Tiny on-disk datasets for the dataset tests: every accepted form, plus broken ones.

Images are solid colours that encode their class (and an index), so a test can check that
labels follow their images through decoding, ordering and caching.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def colour(label: int, index: int) -> tuple[int, int, int]:
    """The solid colour of example ``index`` of class ``label`` (exact in PNG, close in JPEG)."""
    return (20 * label + 10, (37 * index) % 200 + 20, 128)


def label_of(pixel: np.ndarray) -> int:
    """Inverse of :func:`colour` for the class (tolerates JPEG error)."""
    return round((float(pixel[0]) - 10) / 20)


def write_image(path: Path, rgb: tuple[int, int, int], size: int | tuple[int, int] = 32,
                fmt: str | None = None) -> None:
    w, h = (size, size) if isinstance(size, int) else size
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), rgb).save(path, format=fmt)


def class_tree(root: Path, classes: tuple[str, ...] = CIFAR_CLASSES, per_class: tuple[int, int] = (3, 2),
               size: int | tuple[int, int] = 32, test_dir: str = "test", ext: str = ".png") -> Path:
    """``root/train/<class>/NNNN<ext>`` and ``root/<test_dir>/<class>/...``; returns root."""
    for split, n in (("train", per_class[0]), (test_dir, per_class[1])):
        for label, cls in enumerate(classes):
            for i in range(n):
                e = ext if i % 2 == 0 else ".jpg"  # a mix of formats
                write_image(root / split / cls / f"{i:04d}{e}", colour(label, i), size)
    return root


def tar_of(src: Path, archive: Path, prefix: str = "") -> Path:
    """Tar (gzip when the name says so) everything under ``src``, under ``prefix/``."""
    mode = "w:gz" if archive.name.endswith((".gz", ".tgz")) else "w"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode) as tf:
        for p in sorted(src.rglob("*")):
            tf.add(p, arcname=str(Path(prefix) / p.relative_to(src)) if prefix else str(p.relative_to(src)),
                   recursive=False)
    return archive


def fake_batches(d: Path, per_batch: int = 4, test: int = 6, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A fake ``cifar-10-batches-py``: returns (train_x, train_y, test_x, test_y)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        with open(d / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y}, fh, protocol=2)
        xs.append(x)
        ys.append(np.array(y))
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CIFAR_CLASSES]}))
    return (np.concatenate(xs[:5]).reshape(-1, 3, 32, 32), np.concatenate(ys[:5]),
            xs[5].reshape(-1, 3, 32, 32), ys[5])


def official_archive(root: Path, work: Path, **kw: int) -> tuple[Path, tuple[np.ndarray, ...]]:
    """``root/cifar-10-python.tar.gz`` holding fake batches."""
    arrays = fake_batches(work / "cifar-10-batches-py", **kw)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(work / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, arrays


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def jpeg_bytes(rgb: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buf, format="JPEG")
    return buf.getvalue()
