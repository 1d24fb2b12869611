"""imagefolder: directory and archive trees, in memory or streamed, and corrupt inputs."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import torch
from data_fixtures import class_tree, label_of, tar_of, truncate

from hairlab.data.cache import COMPLETE_MARKER, extract_archive
from hairlab.errors import HairlabError
from hairlab.plugin_manager import registry

CLASSES = ("ant", "bee", "cow")


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HAIRLAB_DATA", raising=False)


def folder(**kw: object):
    kw.setdefault("num_classes", 3)
    kw.setdefault("image_size", 16)
    kw.setdefault("workers", 1)
    return registry("datasets").create("imagefolder", **kw)


def tree(root: Path, **kw: object) -> Path:
    kw.setdefault("size", (40, 24))  # not square, not 16: resized and centre-cropped
    return class_tree(root, classes=CLASSES, per_class=(4, 2), test_dir="val", **kw)  # type: ignore[arg-type]


def cache() -> Path:
    return Path(os.environ["HAIRLAB_CACHE"])


def raw_labels(dm, x: torch.Tensor) -> list[int]:
    """Class of each (normalized) image in a batch, from its red channel."""
    red = x[:, 0, 8, 8] * dm.normalizer.std[0] + dm.normalizer.mean[0]
    return [label_of([float(v) * 255]) for v in red]  # type: ignore[list-item]


def test_directory_tree_in_memory(tmp_path: Path) -> None:
    root = tree(tmp_path / "imgs")
    dm = folder(root=root)
    info = dm.info()
    assert info["in_memory"] is True and info["classes"] == list(CLASSES) and info["eval_folder"] == "val"
    assert dm.input_shape == (3, 16, 16)
    assert (dm.num_examples("train"), dm.num_examples("test")) == (12, 6)
    for split in ("train", "test"):
        x, y = dm.tensors(split)
        assert [label_of(img[:, 8, 8].numpy()) for img in x] == y.tolist()
    again = folder(root=root)
    assert again.info()["cache_hit"] is True
    assert torch.equal(again.tensors("train")[0], dm.tensors("train")[0])
    # the splits' digests (the run's MLflow dataset inputs) do not care whether the cache was hit
    assert [again.digest(s) for s in ("train", "test")] == [dm.digest(s) for s in ("train", "test")]
    image = next(p for p in sorted((root / "train").rglob("*")) if p.is_file())
    image.write_bytes(image.read_bytes())  # touched: another fingerprint, another digest
    os.utime(image, ns=(1, 1))
    assert folder(root=root).digest("train") != dm.digest("train")


def test_archive_with_prefix_and_test_folder(tmp_path: Path) -> None:
    src = class_tree(tmp_path / "src", classes=CLASSES, per_class=(3, 1), test_dir="test", size=20)
    archive = tar_of(src, tmp_path / "imgs.tar.gz", prefix="mini-imagenet")
    dm = folder(root=archive, val_size=3)
    assert dm.info()["format"] == "archive" and dm.info()["eval_folder"] == "test"
    assert [dm.num_examples(s) for s in ("train", "val", "test")] == [6, 3, 3]
    x, y = dm.tensors("train")
    assert [label_of(img[:, 8, 8].numpy()) for img in x] == y.tolist()


def test_streamed_tree_matches_in_memory_batches(tmp_path: Path) -> None:
    root = tree(tmp_path / "imgs")
    mem = folder(root=root, crop_padding=2)
    streamed = folder(root=root, in_memory=False, workers=0, crop_padding=2, stats_images=100)
    assert streamed.info()["in_memory"] is False
    assert streamed.num_examples("train") == 12
    assert streamed.normalizer.mean == pytest.approx(mem.normalizer.mean, abs=1e-9)
    # same generator, same draws: the streamed epoch equals the in-memory epoch exactly
    a = list(mem.train_batches(5, device="cpu", generator=torch.Generator().manual_seed(3)))
    b = list(streamed.train_batches(5, device="cpu", generator=torch.Generator().manual_seed(3)))
    assert [len(y) for _, y in b] == [5, 5, 2]
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(ya, yb) and torch.allclose(xa, xb)
    ev = list(streamed.eval_batches("test", 4, device="cpu"))
    assert torch.cat([y for _, y in ev]).tolist() == mem.tensors("test")[1].tolist()
    assert raw_labels(streamed, ev[0][0]) == ev[0][1].tolist()


def test_streaming_with_worker_processes(tmp_path: Path) -> None:
    root = tree(tmp_path / "imgs")
    dm = folder(root=root, in_memory=False, workers=2)
    batches = dm.train_batches(4, device="cpu", generator=torch.Generator().manual_seed(0))
    assert len(batches) == 3
    ys = [y for _, y in batches]
    assert sorted(torch.cat(ys).tolist()) == sorted(dm_labels(root))


def dm_labels(root: Path) -> list[int]:
    return [CLASSES.index(p.parent.name) for p in (root / "train").rglob("*.*")]


def test_auto_streams_when_too_big_and_archives_are_extracted_once(tmp_path: Path) -> None:
    archive = tar_of(tree(tmp_path / "src"), tmp_path / "imgs.tar")
    dm = folder(root=archive, max_memory_mb=0, workers=0)
    info = dm.info()
    assert info["in_memory"] is False
    extracted = Path(info["extracted_to"])
    marker = extracted / COMPLETE_MARKER
    assert marker.is_file() and (extracted / "train" / "ant").is_dir()
    stamp = marker.stat().st_mtime_ns
    folder(root=archive, max_memory_mb=0, workers=0)
    assert marker.stat().st_mtime_ns == stamp  # not extracted again
    x, y = next(iter(dm.eval_batches("test", 6, device="cpu")))
    assert raw_labels(dm, x) == y.tolist()


def test_configured_stats_skip_the_sample(tmp_path: Path) -> None:
    dm = folder(root=tree(tmp_path / "imgs"), in_memory=False, workers=0, mean=[0.5] * 3, std=[0.5] * 3)
    assert dm.info()["stats_from"] == "config"


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("in_memory", [True, False])
def test_unreadable_image_is_named(tmp_path: Path, in_memory: bool) -> None:
    root = tree(tmp_path / "imgs")
    bad = root / "train" / "bee" / "0002.png"
    bad.write_bytes(b"\x89PNG but not really")
    with pytest.raises(HairlabError) as err:
        dm = folder(root=root, in_memory=in_memory, workers=0, normalize=False)
        list(dm.train_batches(4, device="cpu", generator=torch.Generator()))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_truncated_archive_leaves_nothing_half_extracted(tmp_path: Path) -> None:
    archive = tar_of(tree(tmp_path / "src", size=(200, 200)), tmp_path / "imgs.tar.gz")
    truncate(archive, 0.7)
    for in_memory in (True, False):
        with pytest.raises(HairlabError) as err:
            folder(root=archive, in_memory=in_memory, workers=0)
        assert str(archive) in str(err.value) and "\n" not in str(err.value)
    leftovers = [p for p in cache().rglob("*") if p.is_file() and p.parent.name != "locks"]
    assert leftovers == []


def test_extract_archive_refuses_paths_outside_and_cleans_up(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        data = b"x"
        for name in ("train/a/ok.png", "../escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(HairlabError, match=r"evil\.tar"):
        extract_archive(evil)
    assert not (tmp_path / "escape.txt").exists()
    assert list((cache() / "extracted").iterdir()) == []


def test_stale_unmarked_extraction_is_redone(tmp_path: Path) -> None:
    archive = tar_of(tree(tmp_path / "src"), tmp_path / "imgs.tar")
    dest = extract_archive(archive)
    (dest / COMPLETE_MARKER).unlink()
    (dest / "train" / "ant" / "0000.png").unlink()  # as if a crash had cut it short
    again = extract_archive(archive)
    assert again == dest and (dest / COMPLETE_MARKER).exists()
    assert (dest / "train" / "ant" / "0000.png").is_file()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p, "does not exist"),
    (lambda p: (p.mkdir(), p)[1], "no images under train"),
    (lambda p: (class_tree(p, classes=CLASSES, per_class=(1, 0)), p)[1], "no images under val"),
    (lambda p: (p.parent.mkdir(exist_ok=True), p.write_text("x"), p)[2], "not a tar archive"),
])
def test_layout_errors(tmp_path: Path, make, message: str) -> None:
    root = make(tmp_path / "root")
    with pytest.raises(HairlabError, match=message) as err:
        folder(root=root)
    assert "\n" not in str(err.value)


def test_class_count_and_foreign_val_classes(tmp_path: Path) -> None:
    root = tree(tmp_path / "imgs")
    with pytest.raises(HairlabError, match=r"set dataset\.num_classes=3"):
        folder(root=root, num_classes=1000)
    (root / "val" / "yak").mkdir()
    class_tree(root / "x", classes=("yak",), per_class=(0, 1), test_dir="val")
    (root / "x" / "val" / "yak" / "0000.png").rename(root / "val" / "yak" / "0000.png")
    with pytest.raises(HairlabError, match="missing from train"):
        folder(root=root)


def test_options_are_checked(tmp_path: Path) -> None:
    root = tree(tmp_path / "imgs")
    with pytest.raises(HairlabError, match="in_memory"):
        folder(root=root, in_memory="sometimes")
    with pytest.raises(HairlabError, match="image_size"):
        folder(root=root, image_size=0)
