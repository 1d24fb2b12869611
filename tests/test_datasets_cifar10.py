"""cifar10: every accepted form, caching, downloading over real HTTP, and corrupt inputs."""

from __future__ import annotations

import functools
import http.server
import os
import pickle
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import (
    CIFAR_CLASSES,
    class_tree,
    fake_batches,
    label_of,
    official_archive,
    tar_of,
    truncate,
    write_image,
)

from hairlab.data.cache import file_digest
from hairlab.errors import HairlabError
from hairlab.plugin_manager import registry

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def cifar(**kw: object):
    kw.setdefault("workers", 1)
    kw.setdefault("download", False)
    return registry("datasets").create("cifar10", **kw)


def cache_files() -> list[str]:
    d = Path(os.environ["HAIRLAB_CACHE"])
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HAIRLAB_DATA", raising=False)


def one_line(exc: pytest.ExceptionInfo[HairlabError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# -- accepted forms ---------------------------------------------------------------------------
def test_batches_dir_loads_in_official_order_and_is_cached(tmp_path: Path) -> None:
    xtr, ytr, xte, _ = fake_batches(tmp_path / "data" / "cifar-10-batches-py")
    dm = cifar(root=tmp_path / "data")
    assert dm.num_examples("train") == 20 and dm.num_examples("test") == 6
    assert torch.equal(dm.tensors("train")[0], torch.from_numpy(xtr))
    assert dm.tensors("train")[1].tolist() == ytr.tolist()
    assert torch.equal(dm.tensors("test")[0], torch.from_numpy(xte))
    info = dm.info()
    assert (info["format"], info["cache_hit"], info["order"]) == ("batches", False, "official")
    assert info["classes"] == list(CIFAR_CLASSES)
    assert [f for f in cache_files() if f.endswith(".pt")], cache_files()
    again = cifar(root=tmp_path / "data")
    assert again.info()["cache_hit"] is True
    assert torch.equal(again.tensors("train")[0], dm.tensors("train")[0])


def test_root_may_point_inside_the_batches_dir(tmp_path: Path) -> None:
    xtr, *_ = fake_batches(tmp_path / "cifar-10-batches-py")
    dm = cifar(root=tmp_path / "cifar-10-batches-py")
    assert torch.equal(dm.tensors("train")[0], torch.from_numpy(xtr))


def test_official_archive_gives_the_same_tensors_as_the_batches(tmp_path: Path) -> None:
    archive, (xtr, _, xte, yte) = official_archive(tmp_path / "data", tmp_path / "work")
    dm = cifar(root=tmp_path / "data")
    assert dm.info()["format"] == "official-archive"
    assert dm.info()["source_sha256"] == file_digest(archive)
    assert torch.equal(dm.tensors("train")[0], torch.from_numpy(xtr))
    assert dm.tensors("test")[1].tolist() == yte.tolist()
    # the archive file itself as the root, under another name
    renamed = tmp_path / "elsewhere" / "my-cifar-copy.tgz"
    renamed.parent.mkdir()
    shutil.copy(archive, renamed)
    assert torch.equal(cifar(root=renamed).tensors("test")[0], torch.from_numpy(xte))


def _check_tree_module(dm, n_train: int = 30, n_test: int = 20) -> None:
    assert dm.num_examples("train") == n_train and dm.num_examples("test") == n_test
    for split in ("train", "test"):
        x, y = dm.tensors(split)
        assert x.shape[1:] == (3, 32, 32)
        assert [label_of(img[:, 5, 5].numpy()) for img in x] == y.tolist()  # labels follow images


def test_class_folder_tree_maps_labels_in_cifar_order_and_shuffles_fixedly(tmp_path: Path) -> None:
    class_tree(tmp_path / "data")
    dm = cifar(root=tmp_path / "data")
    _check_tree_module(dm)
    y = dm.tensors("train")[1].tolist()
    assert y != sorted(y), "a class-sorted order would make 'first N' one class"
    assert len(set(y[:10])) >= 4
    assert dm.info()["format"] == "tree" and dm.info()["order"].startswith("fixed shuffle")
    shutil.rmtree(Path(os.environ["HAIRLAB_CACHE"]))
    assert cifar(root=tmp_path / "data").tensors("train")[1].tolist() == y  # same order every build
    assert cifar(root=tmp_path / "data", train_size=7).tensors("train")[1].tolist() == y[:7]


def test_tree_subdirectory_and_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class_tree(tmp_path / "data" / "cifar10-png")
    monkeypatch.setenv("HAIRLAB_DATA", str(tmp_path / "data"))
    dm = cifar()
    _check_tree_module(dm)
    assert dm.info()["source"] == str(tmp_path / "data" / "cifar10-png")


@pytest.mark.parametrize(("name", "prefix"), [("cifar10-jpg.tar.gz", ""), ("CIFAR10-copy.tar", "cifar10")])
def test_class_folder_tarball(tmp_path: Path, name: str, prefix: str) -> None:
    tar_of(class_tree(tmp_path / "tree"), tmp_path / "data" / name, prefix=prefix)
    dm = cifar(root=tmp_path / "data")
    _check_tree_module(dm)
    assert dm.info()["format"] == "tree-archive"
    tree_dm = cifar(root=tmp_path / "tree")
    assert torch.equal(dm.tensors("train")[1], tree_dm.tensors("train")[1])  # same fixed order


def test_forms_are_tried_in_documented_order(tmp_path: Path) -> None:
    class_tree(tmp_path / "data")
    fake_batches(tmp_path / "data" / "cifar-10-batches-py")
    assert cifar(root=tmp_path / "data").info()["format"] == "batches"


def test_relative_root_is_taken_from_the_current_directory(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake_batches(tmp_path / "d" / "cifar-10-batches-py")
    monkeypatch.chdir(tmp_path)
    assert cifar(root="d").num_examples("train") == 20


def test_changed_source_rebuilds_the_cache_and_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    d = tmp_path / "data" / "cifar-10-batches-py"
    fake_batches(d, seed=0)
    first = cifar(root=tmp_path / "data")
    xtr, *_ = fake_batches(d, seed=1)
    os.utime(d / "data_batch_1", ns=(1, 1))
    second = cifar(root=tmp_path / "data")
    assert second.info()["cache_hit"] is False
    assert torch.equal(second.tensors("train")[0], torch.from_numpy(xtr))
    assert not torch.equal(first.tensors("train")[0], second.tensors("train")[0])
    for f in Path(os.environ["HAIRLAB_CACHE"]).rglob("*.pt"):
        f.write_bytes(b"not a torch file")
    third = cifar(root=tmp_path / "data")
    assert third.info()["cache_hit"] is False
    assert torch.equal(third.tensors("train")[0], torch.from_numpy(xtr))


def test_process_pool_decoding_matches_single_process(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import hairlab.data.images as images

    monkeypatch.setattr(images, "CHUNK", 7)  # several chunks, so the pool really gets work
    class_tree(tmp_path / "data")
    tar_of(tmp_path / "data", tmp_path / "arch" / "cifar10.tar.gz")
    one = cifar(root=tmp_path / "arch", workers=1)
    shutil.rmtree(Path(os.environ["HAIRLAB_CACHE"]))
    two = cifar(root=tmp_path / "arch", workers=2)
    for split in ("train", "test"):
        assert torch.equal(one.tensors(split)[0], two.tensors(split)[0])
        assert torch.equal(one.tensors(split)[1], two.tensors(split)[1])


def test_options_are_checked(tmp_path: Path) -> None:
    fake_batches(tmp_path / "cifar-10-batches-py")
    with pytest.raises(HairlabError, match=r"dataset\.num_classes=100: cifar10 has 10 classes"):
        cifar(root=tmp_path, num_classes=100)
    with pytest.raises(HairlabError, match=r"dataset\.image_size=64: cifar10 images are 32x32"):
        cifar(root=tmp_path, image_size=64)


# -- not found, downloading -------------------------------------------------------------------
def test_nothing_found_offline_is_one_line_saying_where_what_and_how(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HairlabError) as err:
        cifar(root=empty, download=True, url="http://127.0.0.1:9/cifar-10-python.tar.gz")  # discard port
    msg = one_line(err)
    assert str(empty) in msg and "dataset.root" in msg and "HAIRLAB_DATA" in msg
    assert "cifar-10-batches-py" in msg and "cifar-10-python.tar.gz" in msg and "train/<class>" in msg
    assert "downloading" in msg
    assert list(empty.iterdir()) == []  # no partial download left behind
    with pytest.raises(HairlabError, match="download=false"):
        cifar(root=empty, download=False)


def test_default_root_is_in_the_cache_dir(tmp_path: Path) -> None:
    with pytest.raises(HairlabError) as err:
        cifar(download=False)
    assert str(tmp_path / "cache" / "data") in one_line(err) and "default data directory" in str(err.value)


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a directory, in a thread."""
    served = tmp_path / "served"
    served.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_over_http_verifies_the_checksum(tmp_path: Path, http_dir: tuple[Path, str]) -> None:
    served, base = http_dir
    archive, (xtr, *_) = official_archive(served, tmp_path / "work")
    md5 = file_digest(archive, "md5")
    root = tmp_path / "root"
    dm = cifar(root=root, download=True, url=f"{base}/cifar-10-python.tar.gz", md5=md5)
    assert torch.equal(dm.tensors("train")[0], torch.from_numpy(xtr))
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert dm.info()["format"] == "official-archive"
    # found on disk next time: no server needed
    assert cifar(root=root, download=True, url="http://127.0.0.1:9/x").info()["cache_hit"] is True


def test_download_with_a_wrong_checksum_leaves_nothing(tmp_path: Path, http_dir: tuple[Path, str]) -> None:
    served, base = http_dir
    official_archive(served, tmp_path / "work")
    root = tmp_path / "root"
    with pytest.raises(HairlabError) as err:
        cifar(root=root, download=True, url=f"{base}/cifar-10-python.tar.gz", md5="0" * 32)
    assert "checksum mismatch" in one_line(err)
    assert list(root.iterdir()) == []


def test_download_http_error_is_reported_as_not_found(tmp_path: Path, http_dir: tuple[Path, str]) -> None:
    _, base = http_dir
    with pytest.raises(HairlabError) as err:
        cifar(root=tmp_path / "root", download=True, url=f"{base}/missing.tar.gz")
    assert "404" in one_line(err) and "accepted forms" in str(err.value)


# -- corrupt inputs ---------------------------------------------------------------------------
def test_truncated_official_archive(tmp_path: Path) -> None:
    archive, _ = official_archive(tmp_path / "data", tmp_path / "work", per_batch=200)
    truncate(archive, 0.6)
    with pytest.raises(HairlabError) as err:
        cifar(root=tmp_path / "data")
    assert str(archive) in one_line(err)
    assert not [f for f in cache_files() if f.endswith(".pt") or ".partial" in f]


def test_garbage_archive(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    bad = tmp_path / "data" / "cifar-10-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + os.urandom(300))
    with pytest.raises(HairlabError) as err:
        cifar(root=tmp_path / "data")
    assert str(bad) in one_line(err)


def test_truncated_tree_tarball(tmp_path: Path) -> None:
    archive = tar_of(class_tree(tmp_path / "tree", per_class=(20, 2)), tmp_path / "data" / "cifar10.tar.gz")
    truncate(archive, 0.5)
    with pytest.raises(HairlabError) as err:
        cifar(root=tmp_path / "data")
    assert str(archive) in one_line(err)
    assert not [f for f in cache_files() if f.endswith(".pt") or ".partial" in f]


@pytest.mark.parametrize("form", ["tree", "tree-archive"])
def test_unreadable_image_is_named(tmp_path: Path, form: str) -> None:
    tree = class_tree(tmp_path / "tree")
    bad = tree / "train" / "cat" / "0001.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    if form == "tree-archive":
        root = tar_of(tree, tmp_path / "data" / "cifar10.tar.gz", prefix="c10")
        where = f"{root}:c10/train/cat/0001.jpg"
    else:
        root, where = tree, str(bad)
    with pytest.raises(HairlabError) as err:
        cifar(root=root)
    assert where in one_line(err)
    assert not [f for f in cache_files() if f.endswith(".pt")]


@pytest.mark.parametrize(("content", "reason"), [
    (b"garbage, not a pickle", "UnpicklingError"),
    (pickle.dumps([1, 2, 3]), "not a dict"),
    (pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}), "expected uint8"),
    (pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}), "labels"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}), "labels"),
    (pickle.dumps({b"pixels": 1}), "lack 'data'"),
])
def test_wrong_pickle_is_named(tmp_path: Path, content: bytes, reason: str) -> None:
    d = tmp_path / "cifar-10-batches-py"
    fake_batches(d)
    (d / "data_batch_3").write_bytes(content)
    with pytest.raises(HairlabError) as err:
        cifar(root=tmp_path)
    msg = one_line(err)
    assert str(d / "data_batch_3") in msg and reason in msg


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    d = tmp_path / "cifar-10-batches-py"
    fake_batches(d)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(HairlabError, match="refusing to load"):
        cifar(root=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_missing_batch_and_foreign_archive(tmp_path: Path) -> None:
    d = tmp_path / "a" / "cifar-10-batches-py"
    fake_batches(d)
    (d / "data_batch_5").unlink()
    with pytest.raises(HairlabError, match="data_batch_5"):
        cifar(root=tmp_path / "a")
    foreign = tmp_path / "b" / "cifar-10-python.tar.gz"
    foreign.parent.mkdir()
    with tarfile.open(foreign, "w:gz") as tf:
        tf.add(d / "data_batch_1", arcname="something/else")
    with pytest.raises(HairlabError, match="lacks cifar-10-batches-py/data_batch_1"):
        cifar(root=tmp_path / "b")


def test_wrong_class_folders(tmp_path: Path) -> None:
    class_tree(tmp_path / "data", classes=("cats", "dogs"))
    with pytest.raises(HairlabError) as err:
        cifar(root=tmp_path / "data")
    assert "imagefolder" in one_line(err) and "cats" in str(err.value)


def test_tree_without_test_images(tmp_path: Path) -> None:
    class_tree(tmp_path / "data")
    shutil.rmtree(tmp_path / "data" / "test")
    (tmp_path / "data" / "test").mkdir()
    with pytest.raises(HairlabError, match="no images under test"):
        cifar(root=tmp_path / "data")


def test_odd_sized_images_are_resized_to_32(tmp_path: Path) -> None:
    class_tree(tmp_path / "data", size=(48, 40))
    write_image(tmp_path / "data" / "train" / "dog" / "9999.png", (110, 20, 128), size=(16, 16))
    dm = cifar(root=tmp_path / "data")
    assert dm.tensors("train")[0].shape[1:] == (3, 32, 32) and dm.num_examples("train") == 31


# -- the real data ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is missing (the shared JPEG copy of CIFAR-10)")
def test_real_shared_cifar10_jpeg_copy() -> None:
    dm = cifar(root=REAL.parent, workers=2)
    assert (dm.num_examples("train"), dm.num_examples("test")) == (50_000, 10_000)
    info = dm.info()
    assert info["source_sha256"] == "d34c68f61cca57aa9144c8f25bda427abb9921bd642d5857a2fc1a6b4416f965"
    for split, per_class in (("train", 5000), ("test", 1000)):
        assert torch.bincount(dm.tensors(split)[1], minlength=10).tolist() == [per_class] * 10
    assert torch.bincount(dm.tensors("train")[1][:1000], minlength=10).min() > 60  # a fair first 1000
    # CIFAR-10's well-known channel means, give or take the JPEG re-encoding
    assert info["mean"] == pytest.approx([0.4914, 0.4822, 0.4465], abs=0.01)
    cached = cifar(root=REAL.parent, train_size=1000, val_size=500)
    assert cached.info()["cache_hit"] is True and cached.info()["load_s"] < 10
    assert (cached.num_examples("train"), cached.num_examples("val")) == (1000, 500)


@pytest.mark.slow  # two fresh interpreters importing torch: seconds each on a busy machine
def test_parallel_jobs_decode_once(tmp_path: Path) -> None:
    """Two processes building the same dataset at once: one decodes, the other waits and loads."""
    import subprocess
    import sys

    class_tree(tmp_path / "data", per_class=(30, 5))
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "from hairlab.plugin_manager import registry\n"
            f"dm = registry('datasets').create('cifar10', root={str(tmp_path / 'data')!r}, workers=1)\n"
            "print('hit', dm.info()['cache_hit'])\n")
    env = {**os.environ}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("decoding CIFAR-10") for o in outs) == 1, outs
    assert sorted(o.strip().splitlines()[-1] for o in outs) == ["hit False", "hit True"]
