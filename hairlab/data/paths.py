"""Where datasets are looked for and where derived files are cached.

Data root: ``dataset.root`` from the config, else ``$HAIRLAB_DATA``, else
``<cache>/data``. Cache: ``$HAIRLAB_CACHE``, else ``$XDG_CACHE_HOME/hairlab``, else
``~/.cache/hairlab``: hairlab's one cache rule, used by every cache (decoded tensors, extracted
archives, the cost model's host calibrations under ``<cache>/calibration``). Tests point
``$HAIRLAB_CACHE`` at a temporary directory so they never write into a user's home.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "HAIRLAB_DATA"
ENV_CACHE = "HAIRLAB_CACHE"


def cache_dir() -> Path:
    """The per-user cache directory for extracted archives and decoded tensors."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hairlab"


def data_root(root: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The data root and where it came from (for error messages).

    A relative ``root`` is taken from the current directory (hairlab runs with Hydra's
    ``chdir: false``, so that is where the command was started).
    """
    if root is not None and str(root) != "":
        return _absolute(str(root)), "dataset.root"
    env = os.environ.get(ENV_DATA)
    if env:
        return _absolute(env), f"${ENV_DATA}"
    return cache_dir() / "data", "the default data directory"


def _absolute(path: str) -> Path:
    """``~`` and ``$VARS`` expanded, made absolute and normalized (``a/../b`` -> ``b``)."""
    return Path(os.path.abspath(os.path.expanduser(os.path.expandvars(path))))
