"""Checksums, fingerprints, atomic files and once-only archive extraction.

The rule everywhere: a cache entry becomes visible only when complete. Files are written
beside their final name and ``os.replace``d into place; archives are extracted into a
``*.partial-*`` directory, which gets a completion marker and is then renamed. An
interrupted or failed run leaves at most a partial directory, which is never mistaken for
a finished one and is removed by the next attempt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hairlab.errors import HairlabError

#: Bumped when the layout of cached tensors changes, so old caches are rebuilt.
CACHE_VERSION = 1
COMPLETE_MARKER = ".hairlab-complete"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive_name(path: str | os.PathLike[str]) -> bool:
    """Whether a file name looks like a tar archive hairlab can read."""
    name = os.fspath(path).lower()
    return name.endswith(ARCHIVE_SUFFIXES)


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap identity of a file or directory tree: paths, sizes and modification times.

    Used as a cache key, so a changed source (new file, edited image, replaced archive) gets
    a fresh cache entry without hashing gigabytes on every start.
    """
    p = Path(path).resolve()
    h = hashlib.sha256(str(p).encode())
    if p.is_dir():
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            for name in sorted(filenames):
                st = os.stat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), p)
                h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    else:
        st = p.stat()
        h.update(f"\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the exclusive lock ``<cache>/locks/<name>.lock`` (POSIX ``flock``).

    The jobs of a parallel sweep all start by building the same dataset: with this, one
    decodes or extracts while the others wait and then find the finished cache entry. The
    lock is released by the OS if its holder dies. Where ``fcntl`` is missing (Windows)
    it does nothing, which only costs duplicate work.
    """
    from hairlab.data.paths import cache_dir

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = cache_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def save_tensors(obj: dict[str, Any], final: Path) -> None:
    """``torch.save`` a dict of tensors and plain values atomically."""
    import torch

    with atomic_path(final) as tmp:
        torch.save(obj, tmp)


def load_tensors(path: Path) -> dict[str, Any] | None:
    """A cached dict saved by :func:`save_tensors`, or ``None`` if absent or unreadable.

    Loaded with ``weights_only=True``: a cache file can hold tensors and plain values only,
    never code. An unreadable or stale file is deleted so it gets rebuilt.
    """
    import torch

    if not path.is_file():
        return None
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, not fatal
        path.unlink(missing_ok=True)
        return None
    if not isinstance(obj, dict) or obj.get("cache_version") != CACHE_VERSION:
        path.unlink(missing_ok=True)
        return None
    return obj


def archive_error(archive: Path, exc: BaseException) -> HairlabError:
    """The one-line error for an archive that cannot be read."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return HairlabError(
        f"cannot read archive {archive}: {reason} ({type(exc).__name__}); the file is truncated or "
        f"corrupt: replace it (or delete it to download again)"
    )


#: Exceptions a damaged tar/gzip/bzip2/xz stream can raise while being read.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error, OSError)
try:  # optional codecs
    import lzma

    ARCHIVE_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass


def extract_archive(archive: Path, name: str | None = None) -> Path:
    """Extract ``archive`` once into the cache and return the extracted directory.

    The directory is keyed by the archive's fingerprint, so a replaced archive is extracted
    again. Member paths are checked by tarfile's ``data`` filter (no absolute paths, no
    ``..``, no device files or links outside the tree).
    """
    from hairlab.data.paths import cache_dir

    stem = name or archive.name.split(".")[0]
    dest = cache_dir() / "extracted" / f"{stem}-{fingerprint(archive)}"
    if (dest / COMPLETE_MARKER).is_file():
        return dest
    with locked(dest.name):
        return _extract(archive, dest)


def _extract(archive: Path, dest: Path) -> Path:
    if (dest / COMPLETE_MARKER).is_file():  # another process finished it while we waited
        return dest
    if dest.exists():  # left by a crash between rename and marker: never trust it
        shutil.rmtree(dest, ignore_errors=True)
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(partial, filter="data")
        (partial / COMPLETE_MARKER).write_text(f"{archive}\n")
        try:
            os.rename(partial, dest)
        except OSError:
            if not (dest / COMPLETE_MARKER).is_file():  # another process won the race
                raise
    except ARCHIVE_ERRORS as exc:
        raise archive_error(archive, exc) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest
