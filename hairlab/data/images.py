"""Class-folder image trees and tarballs, decoded once into uint8 arrays.

A tree is ``<split>/<class>/<file>`` (ImageNet and torchvision's ``ImageFolder`` layout),
either on disk or inside a tar archive (with or without a top-level directory). Decoding
uses Pillow in a small process pool; each image is converted to RGB and, when it is not
already ``size x size``, resized so its shorter side is ``size`` and centre-cropped.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hairlab.data.cache import ARCHIVE_ERRORS, archive_error
from hairlab.errors import HairlabError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff")
#: Images decoded per task sent to a worker process.
CHUNK = 2000


def is_image_name(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


@dataclass
class Tree:
    """The images of a class-folder tree, split -> class -> sorted file references.

    A reference is a filesystem path (directory trees) or a member name (archives).
    """

    source: Path
    archive: bool
    splits: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def classes(self, split: str) -> list[str]:
        return sorted(self.splits.get(split, {}))

    def count(self, split: str) -> int:
        return sum(len(v) for v in self.splits.get(split, {}).values())


def scan_dir(root: Path, split_names: Iterable[str]) -> Tree:
    """Find ``root/<split>/<class>/<image>`` for each split present."""
    tree = Tree(root, archive=False)
    for split in split_names:
        base = root / split
        if not base.is_dir():
            continue
        classes: dict[str, list[str]] = {}
        for cls in sorted(os.listdir(base)):
            cdir = base / cls
            if cls.startswith(".") or not cdir.is_dir():
                continue
            classes[cls] = sorted(str(cdir / f) for f in os.listdir(cdir) if is_image_name(f))
        tree.splits[split] = classes
    return tree


def _split_and_class(member: str, wanted: set[str]) -> tuple[str, str] | None:
    """``(split, class)`` of a ``[prefix/]<split>/<class>/<image>`` member name, else None."""
    parts = [p for p in member.split("/") if p not in ("", ".")]
    if len(parts) >= 3 and parts[-3] in wanted:
        return parts[-3], parts[-2]
    return None


def scan_tar(archive: Path, split_names: Iterable[str]) -> Tree:
    """Find ``[prefix/]<split>/<class>/<image>`` members of a tar archive (one pass)."""
    wanted = set(split_names)
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    try:
        with tarfile.open(archive) as tf:
            for m in tf:
                if not m.isfile() or not is_image_name(m.name):
                    continue
                where = _split_and_class(m.name, wanted)
                if where is not None:
                    found[where[0]][where[1]].append(m.name)
    except ARCHIVE_ERRORS as exc:
        raise archive_error(archive, exc) from None
    tree = Tree(archive, archive=True)
    for split, classes in found.items():
        tree.splits[split] = {c: sorted(classes[c]) for c in sorted(classes)}
    return tree


def fixed_order(keys: Sequence[tuple[str, str]], order_seed: int | None = 0) -> np.ndarray:
    """Indices putting ``(class, reference)`` keys in a fixed shuffled order.

    Sorted by class then file name first, so the order does not depend on the file system
    or archive; then permuted with a fixed seed, so that "the first N examples" is a fair
    subset of all classes rather than the first class only. ``order_seed=None`` keeps the
    sorted order.
    """
    order = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)
    if order_seed is not None and len(order):
        order = order[np.random.Generator(np.random.PCG64(order_seed)).permutation(len(order))]
    return order


# -- decoding ---------------------------------------------------------------------------------
def decode_image(data: bytes | str, size: int) -> np.ndarray:
    """One image (bytes or a path) as a ``(size, size, 3)`` uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        if im.size == (size, size) and im.mode == "RGB":  # the common small-image case: no copies
            return np.asarray(im, dtype=np.uint8)
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
        rgb = im.convert("RGB")
    if rgb.size != (size, size):
        w, h = rgb.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        rgb = rgb.crop((left, top, left + size, top + size))
    return np.asarray(rgb, dtype=np.uint8)


def _decode_chunk(items: list[bytes | str], names: list[str], size: int) -> tuple[bytes, str | None]:
    """Worker task: decode a chunk; on failure return the failing name and reason."""
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for i, (data, name) in enumerate(zip(items, names, strict=True)):
        try:
            out[i] = decode_image(data, size)
        except Exception as exc:  # noqa: BLE001 - any decoder failure names the file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return b"", f"{name}: {reason}"
    return out.tobytes(), None


def _dir_chunks(tree: Tree) -> Iterator[tuple[list[tuple[str, str, str]], list[bytes | str]]]:
    """Chunks of ((split, class, reference), path) for a directory tree; workers read files."""
    keys = [(split, cls, ref) for split, classes in tree.splits.items()
            for cls, refs in classes.items() for ref in refs]
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        yield chunk, [k[2] for k in chunk]


def _tar_chunks(archive: Path, split_names: Iterable[str]
                ) -> Iterator[tuple[list[tuple[str, str, str]], list[bytes | str]]]:
    """Chunks of ((split, class, member), bytes) read from a tar archive in one pass.

    gzip allows nothing but sequential reading, so the archive is read once, in its own
    order, and chunks go to the decoders as they fill up: decoding overlaps decompression.
    """
    wanted = set(split_names)
    keys: list[tuple[str, str, str]] = []
    blobs: list[bytes | str] = []
    try:
        with tarfile.open(archive) as tf:
            for m in tf:
                if not m.isfile() or not is_image_name(m.name):
                    continue
                where = _split_and_class(m.name, wanted)
                if where is None:
                    continue
                fh = tf.extractfile(m)
                keys.append((where[0], where[1], m.name))
                blobs.append(fh.read() if fh is not None else b"")
                if len(keys) == CHUNK:
                    yield keys, blobs
                    keys, blobs = [], []
    except ARCHIVE_ERRORS as exc:
        raise archive_error(archive, exc) from None
    if keys:
        yield keys, blobs


@dataclass
class DecodedSplit:
    """One split of a decoded tree: images ``(N, S, S, 3)`` with their class names."""

    images: np.ndarray
    class_names: list[str]
    refs: list[str]

    def ordered(self, classes: Sequence[str], order_seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
        """Images and int64 labels (indices into ``classes``) in the fixed shuffled order."""
        index = {c: i for i, c in enumerate(classes)}
        order = fixed_order(list(zip(self.class_names, self.refs, strict=True)), order_seed)
        labels = np.array([index[c] for c in self.class_names], dtype=np.int64)
        return self.images[order], labels[order]

    def ordered_nchw(self, classes: Sequence[str],
                     order_seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`ordered` as ``(N, 3, S, S)``, releasing this split's images on the way.

        Peak memory is about twice the split's size instead of three times.
        """
        x, y = self.ordered(classes, order_seed)
        self.images = self.images[:0]
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y


def decode_tree(source: Path, split_names: Sequence[str], size: int, *, workers: int = 2,
                tree: Tree | None = None, progress: Callable[[int], Any] | None = None
                ) -> dict[str, DecodedSplit]:
    """Decode every image of the named splits of a class-folder tree or tarball.

    With ``workers > 1`` chunks go to a process pool. An undecodable image raises a
    one-line :class:`HairlabError` naming it (``archive:member`` inside archives).
    """
    if source.is_dir():
        chunks = _dir_chunks(tree if tree is not None else scan_dir(source, split_names))
    else:
        chunks = _tar_chunks(source, split_names)
    parts: list[tuple[list[tuple[str, str, str]], np.ndarray]] = []

    def place(keys: list[tuple[str, str, str]], result: tuple[bytes, str | None]) -> None:
        data, error = result
        if error is not None:
            raise HairlabError(f"cannot decode image {error}; replace or delete that file")
        parts.append((keys, np.frombuffer(data, dtype=np.uint8).reshape(len(keys), size, size, 3)))
        if progress is not None:
            progress(len(keys))

    def names(keys: list[tuple[str, str, str]]) -> list[str]:
        return [k[2] if not source.is_file() else f"{source}:{k[2]}" for k in keys]

    if workers <= 1:
        for keys, items in chunks:
            place(keys, _decode_chunk(items, names(keys), size))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
            pending: list[tuple[list[tuple[str, str, str]], Future[tuple[bytes, str | None]]]] = []
            try:
                for keys, items in chunks:
                    pending.append((keys, pool.submit(_decode_chunk, items, names(keys), size)))
                for keys, fut in pending:
                    place(keys, fut.result())
            except BaseException:
                for _, fut in pending:
                    fut.cancel()
                raise
    if not parts:
        return {}
    all_keys = [k for keys, _ in parts for k in keys]
    all_images = np.concatenate([a for _, a in parts])
    parts.clear()  # peak memory stays about twice the decoded size
    out: dict[str, DecodedSplit] = {}
    for split in split_names:
        idx = [i for i, k in enumerate(all_keys) if k[0] == split]
        if idx:
            out[split] = DecodedSplit(all_images[idx], [all_keys[i][1] for i in idx],
                                      [all_keys[i][2] for i in idx])
    return out


def _mp_context() -> Any:
    """``fork`` where available (a decoder worker only runs Pillow and numpy, and fork needs
    no re-import of ``__main__``, which breaks for stdin scripts and unguarded mains);
    ``spawn`` elsewhere."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
