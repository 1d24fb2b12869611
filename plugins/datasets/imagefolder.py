"""The ``imagefolder`` dataset: an ImageNet-layout tree or tarball, resized to ``image_size``.

Layout: ``train/<class>/<image>`` and ``val/<class>/<image>`` (``test/`` is accepted in place
of ``val/``), as a directory or a tar archive (optionally under one top-level directory).
Class indices are the sorted training folder names. The ``val/`` folder is what the engine
calls the *test* split; the engine's *val* split is carved from ``train/`` by ``val_size``.

Every image is resized so its shorter side is ``image_size`` and centre-cropped to a square.
When all decoded images fit in ``max_memory_mb`` (e.g. 100k images at 64x64 take 1.2 GB) they
are decoded once into a cached uint8 tensor file and trained from memory; otherwise an
archive is extracted once into the cache and images are decoded every epoch by DataLoader
workers, which on a 2-core CPU is far slower than the model (see docs/datasets.md).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hairlab.data.cache import (
    CACHE_VERSION,
    atomic_path,
    extract_archive,
    fingerprint,
    load_tensors,
    locked,
    save_tensors,
)
from hairlab.data.images import Tree, decode_tree, fixed_order, scan_dir, scan_tar
from hairlab.data.paths import ENV_DATA, cache_dir, data_root
from hairlab.errors import HairlabError

log = logging.getLogger("hairlab.data")
EVAL_DIRS = ("val", "test")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _scan(source: Path) -> Tree:
    splits = ("train", *EVAL_DIRS)
    return scan_dir(source, splits) if source.is_dir() else scan_tar(source, splits)


def _check_root(root: Path, how: str) -> None:
    """``root`` is a directory or a tar archive (what it holds is the scan's business)."""
    if not root.exists():
        raise HairlabError(f"imagefolder: {root} (from {how}) does not exist; set dataset.root=PATH (or "
                           f"{ENV_DATA}) to a directory or tar archive holding train/<class>/* and val/<class>/*")
    if root.is_file() and not root.name.lower().endswith(TAR_SUFFIXES):
        raise HairlabError(f"imagefolder: {root} is a file but not a tar archive; set dataset.root=PATH to a "
                           "directory or tar archive holding train/<class>/* and val/<class>/*")


def locate(root: Path, how: str) -> tuple[Tree, str]:
    """The tree at ``root`` and the name of its evaluation folder (``val`` or ``test``)."""
    _check_root(root, how)
    tree = _scan(root)
    if tree.count("train") == 0:
        raise HairlabError(
            f"imagefolder: no images under train/<class>/ in {root} (from {how}); set dataset.root=PATH "
            f"(or {ENV_DATA}) to a directory or tar archive holding train/<class>/* and val/<class>/*"
        )
    eval_dir = next((d for d in EVAL_DIRS if tree.count(d)), None)
    if eval_dir is None:
        raise HairlabError(f"imagefolder: {root} has train/ but no images under val/<class>/ "
                           "(or test/<class>/)")
    return tree, eval_dir


def preflight(*, root: Any, **_: Any) -> None:
    """Before any run exists: the root is a directory or a tar archive (the job scans its tree)."""
    _check_root(*data_root(root))


def _labelled(tree: Tree, split: str, classes: list[str]) -> list[tuple[str, int]]:
    index = {c: i for i, c in enumerate(classes)}
    keys = [(c, ref) for c in sorted(tree.splits.get(split, {})) for ref in tree.splits[split][c]]
    return [(keys[i][1], index[keys[i][0]]) for i in fixed_order(keys)]


def build(*, num_classes: int, image_size: int, root: Any, train_size: int | None, test_size: int | None,
          val_size: int | float, crop_padding: int, pad_mode: str = "zeros", hflip: bool | str, cutout: int = 0,
          normalize: bool, mean: list[float] | None, std: list[float] | None,
          in_memory: Any, max_memory_mb: int, workers: int, stats_images: int) -> Any:
    """A :class:`TensorDataModule` (small enough) or :class:`StreamDataModule` (too large).

    Options: ``ImageFolderOptions`` in this plugin's ``__init__``.
    """
    t0 = time.perf_counter()
    base, how = data_root(root)
    common = dict(num_classes=num_classes, train_size=train_size, test_size=test_size, val_size=val_size,
                  crop_padding=crop_padding, pad_mode=pad_mode, hflip=hflip, cutout=cutout, normalize=normalize,
                  mean=mean, std=std)
    source_id = fingerprint(base) if base.exists() else ""  # paths, sizes, mtimes: the data's digest follows it
    cache_file = cache_dir() / "tensors" / f"imagefolder-{image_size}px-{source_id}.pt" if source_id else None
    cached = load_tensors(cache_file) if cache_file is not None and in_memory is not False else None
    if cached is not None:  # no need to scan the tree again
        _check_classes(base, cached["classes"], num_classes)
        cached["cache_hit"] = True
        extra = {"source": str(base), "format": "archive" if base.is_file() else "tree", "in_memory": True,
                 "eval_folder": cached["eval_folder"], "cache_file": str(cache_file), "source_fingerprint": source_id}
        return _in_memory(cached, extra, t0, common)
    tree, eval_dir = locate(base, how)
    classes = tree.classes("train")
    unknown = sorted(set(tree.classes(eval_dir)) - set(classes))
    if unknown:
        raise HairlabError(f"imagefolder: {base} {eval_dir}/ has classes missing from train/: {unknown[:5]}")
    _check_classes(base, classes, num_classes)
    n_total = tree.count("train") + tree.count(eval_dir)
    need_mb = n_total * 3 * image_size * image_size / 2**20
    memory = need_mb <= max_memory_mb if in_memory == "auto" else bool(in_memory)
    extra: dict[str, Any] = {"source": str(base), "format": "archive" if base.is_file() else "tree",
                             "eval_folder": eval_dir, "decoded_mb": round(need_mb, 1), "in_memory": memory,
                             "source_fingerprint": source_id}
    if memory:
        assert cache_file is not None
        extra["cache_file"] = str(cache_file)
        with locked(cache_file.stem):  # parallel jobs: one decodes, the others wait for its file
            data = load_tensors(cache_file)
            if data is not None and data.get("classes") == classes:
                data["cache_hit"] = True
            else:
                data = _decode_to_cache(cache_file, base, tree, eval_dir, classes, image_size, workers)
        return _in_memory(data, extra, t0, common)
    from hairlab.data.stream import StreamDataModule

    if base.is_file():  # random access needs files: extract once into the cache
        extracted = extract_archive(base, name="imagefolder")
        top = _tree_top(extracted)
        tree = scan_dir(top, ("train", eval_dir))
        extra["extracted_to"] = str(top)
    dm = StreamDataModule("imagefolder", train=_labelled(tree, "train", classes),
                          test=_labelled(tree, eval_dir, classes), size=image_size, classes=classes,
                          workers=workers, stats_images=stats_images, extra_info=extra,
                          **common)  # type: ignore[arg-type]
    dm.note(load_s=round(time.perf_counter() - t0, 3))
    return dm


def _check_classes(base: Path, classes: list[str], num_classes: int) -> None:
    if num_classes != len(classes):
        raise HairlabError(f"imagefolder: {base} has {len(classes)} class folders under train/ but "
                           f"dataset.num_classes={num_classes}; set dataset.num_classes={len(classes)}")


def _in_memory(data: dict[str, Any], extra: dict[str, Any], t0: float, common: dict[str, Any]) -> Any:
    from hairlab.data.tensor import TensorDataModule

    extra.update(cache_hit=data["cache_hit"], first_decode_s=data["decode_s"], order="fixed shuffle, seed 0")
    dm = TensorDataModule("imagefolder", train=(data["train_x"], data["train_y"]),
                          test=(data["test_x"], data["test_y"]), classes=data["classes"],
                          extra_info=extra, **common)
    dm.note(load_s=round(time.perf_counter() - t0, 3))
    return dm


def _tree_top(d: Path) -> Path:
    """The directory holding ``train/`` inside an extracted archive (maybe one level down)."""
    if (d / "train").is_dir():
        return d
    subs = [p for p in d.iterdir() if p.is_dir() and (p / "train").is_dir()]
    if len(subs) != 1:
        raise HairlabError(f"imagefolder: cannot find train/ in the extracted archive at {d}")
    return subs[0]


def _decode_to_cache(path: Path, base: Path, tree: Tree, eval_dir: str, classes: list[str], size: int,
                     workers: int) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    log.info("decoding %s at %dx%d into %s; later runs load the cache", base, size, size, path)
    decoded = decode_tree(base, ("train", eval_dir), size, workers=workers,
                          tree=tree if base.is_dir() else None)
    out: dict[str, Any] = {"cache_version": CACHE_VERSION, "classes": classes, "source": str(base),
                           "eval_folder": eval_dir}
    for split, prefix in (("train", "train"), (eval_dir, "test")):
        x, y = decoded.pop(split).ordered_nchw(classes)
        out[f"{prefix}_x"], out[f"{prefix}_y"] = torch.from_numpy(x), torch.from_numpy(y)
    out["decode_s"] = round(time.perf_counter() - t0, 3)
    save_tensors(out, path)
    with atomic_path(path.with_suffix(".json")) as tmp:  # a human-readable note beside it
        tmp.write_text(json.dumps({"source": str(base), "size": size, "classes": len(classes)}))
    out["cache_hit"] = False
    return out
