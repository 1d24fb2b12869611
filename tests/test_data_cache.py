"""Root and cache resolution, fingerprints, atomic files and once-only extraction."""

from __future__ import annotations

import fractions
import os
import tarfile
from pathlib import Path

import pytest
import torch

from hairlab.data.cache import (
    COMPLETE_MARKER,
    atomic_path,
    extract_archive,
    file_digest,
    fingerprint,
    load_tensors,
    save_tensors,
)
from hairlab.data.paths import cache_dir, data_root
from hairlab.errors import HairlabError


def test_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("HAIRLAB_DATA", raising=False)
    assert data_root(None) == (tmp_path / "c" / "data", "the default data directory")
    monkeypatch.setenv("HAIRLAB_DATA", str(tmp_path / "env"))
    assert data_root(None) == (tmp_path / "env", "$HAIRLAB_DATA")
    assert data_root(tmp_path / "cfg") == (tmp_path / "cfg", "dataset.root")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HAIRLAB_DATA", "sub/../shared/data")
    assert data_root(None)[0] == tmp_path / "shared" / "data"  # relative to the cwd, normalized
    monkeypatch.setenv("WHERE", str(tmp_path / "w"))
    assert data_root("$WHERE/x")[0] == tmp_path / "w" / "x"


def test_cache_dir_env_then_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path / "hc"))
    assert cache_dir() == tmp_path / "hc"
    monkeypatch.delenv("HAIRLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "hairlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "hairlab"


def test_fingerprint_follows_content_changes(tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "a").mkdir(parents=True)
    (d / "a" / "x.png").write_bytes(b"1")
    first = fingerprint(d)
    assert fingerprint(d) == first
    (d / "a" / "y.png").write_bytes(b"2")
    second = fingerprint(d)
    assert second != first
    os.utime(d / "a" / "x.png", ns=(5, 5))
    assert fingerprint(d) != second
    f = tmp_path / "f.tar"
    f.write_bytes(b"abc")
    before = fingerprint(f)
    f.write_bytes(b"abcd")
    assert fingerprint(f) != before
    assert file_digest(f) == "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"


def test_atomic_path_publishes_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(target.parent.iterdir()) == [target]


def test_tensor_cache_round_trip_and_refusals(tmp_path: Path) -> None:
    from hairlab.data.cache import CACHE_VERSION

    path = tmp_path / "t.pt"
    x = torch.arange(5, dtype=torch.uint8)
    save_tensors({"cache_version": CACHE_VERSION, "x": x, "names": ["a"]}, path)
    got = load_tensors(path)
    assert got is not None and got["names"] == ["a"] and torch.equal(got["x"], x)
    save_tensors({"cache_version": -1}, path)  # an old layout is dropped
    assert load_tensors(path) is None and not path.exists()
    # weights_only loading refuses arbitrary objects: the file is dropped, never executed
    torch.save({"cache_version": CACHE_VERSION, "obj": fractions.Fraction(1, 3)}, path)
    assert load_tensors(path) is None and not path.exists()
    assert load_tensors(tmp_path / "missing.pt") is None


def test_extract_once_with_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src"
    (src / "train" / "a").mkdir(parents=True)
    (src / "train" / "a" / "1.png").write_bytes(b"img")
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="top")
    dest = extract_archive(archive)
    assert (dest / COMPLETE_MARKER).is_file()
    assert (dest / "top" / "train" / "a" / "1.png").read_bytes() == b"img"
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no partial directory left
    calls = []
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: calls.append(a))
    assert extract_archive(archive) == dest and calls == []  # complete: not opened again


def test_corrupt_archive_error_names_it_and_leaves_nothing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 50)
    with pytest.raises(HairlabError) as err:
        extract_archive(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert list((tmp_path / "cache" / "extracted").iterdir()) == []
