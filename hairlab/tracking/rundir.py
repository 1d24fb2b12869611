"""Output directories that two commands started in the same second never share.

Hydra's default ``multirun/<date>/<time>`` resolves to the second, so two sweeps started
together shared a directory, its ``hairlab_sweep.json`` and their jobs' files.
conf/config.yaml appends ``${hairlab.unique:}`` to ``hydra.run.dir`` and ``hydra.sweep.dir``:
a random token drawn once per launching process. Hydra copies the launching process's
resolver cache into every job's config (``load_sweep_config``), so joblib and submitit
workers resolve the same directory. :func:`claim` then holds a lock file in the directory
for as long as the run or sweep lives, so even a directory given by hand is never used by
two at once.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from hairlab.errors import HairlabError

RESOLVER = "hairlab.unique"
LOCK_FILE = ".hairlab.lock"
_TOKEN = secrets.token_hex(3)


def unique() -> str:
    """This process's token (six hex digits)."""
    return _TOKEN


def register_resolvers() -> None:
    """Make ``${hairlab.unique:}`` resolvable (idempotent; needed in workers too)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, unique, use_cache=True)


def claim(directory: Path, what: str, key: str) -> Any:
    """Lock ``directory`` for this process, or refuse in one line when another holds it."""
    from filelock import FileLock, Timeout

    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(directory / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise HairlabError(
            f"{key}={directory} is in use by another {what} still running there; "
            f"give this one another {key} (or leave it at its default, unique per command)"
        ) from None
    return lock
