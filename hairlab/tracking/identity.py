"""A job's identity: the digest of what decides its results, tagged ``hairlab.job_key``.

Two jobs with the same key train the same model on the same data the same way, so a
resumed sweep may reuse a FINISHED run of that key instead of training it again, and a
checkpoint may only be continued by a job of its own key.

The key is the sha256 of the resolved config (as flat parameters, the way runs log them)
without :data:`EXCLUDED` (settings that change where or how visibly a job runs, not what it
computes), plus the code version: the hairlab version and the git commit of its source
when it runs from a git checkout (``$HAIRLAB_CODE_VERSION`` replaces both, to pin a
version on purpose). ``trainer.device`` stays in the key: another device gives other
numbers (and ``amp=auto`` means another precision on CUDA).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TAG = "hairlab.job_key"
ENV_CODE_VERSION = "HAIRLAB_CODE_VERSION"

#: Config keys (and everything below them) that do not change a job's results.
EXCLUDED = (
    "hydra",  # output dirs, launcher, sweeper, logging
    "tracking",  # where and how the run is recorded, resume switch, heartbeats
    "tags",  # the user's MLflow tags (labels, not settings)
    "objective",  # what a search optimizes (read from the results, not used to compute them)
    "trainer.progress",  # progress bar
    "trainer.log_every",  # how often the losses are read back for the progress bar
    "trainer.threads",  # CPU threads (joblib sweeps share the cores between jobs)
    "trainer.checkpoint",  # whether checkpoints are written
    "trainer.checkpoint_dir",  # where they are written
    "trainer.resume",  # which checkpoint a job continues from
    "trainer.resume_mismatch",  # whether a differing checkpoint may be continued
)


def excluded(key: str) -> bool:
    return any(key == e or key.startswith(e + ".") for e in EXCLUDED)


def result_params(cfg: Any) -> dict[str, str]:
    """The flat parameters that decide a job's results (the config minus :data:`EXCLUDED`)."""
    from hairlab.tracking.params import config_params

    return {k: v for k, v in sorted(config_params(cfg).items()) if not excluded(k)}


@functools.lru_cache(maxsize=1)
def _source_commit() -> str | None:
    from hairlab.tracking.context import git_commit

    return git_commit(Path(__file__).resolve().parents[2])


def code_version() -> str:
    """``hairlab <version>`` plus ``+g<commit>`` when running from a git checkout."""
    pinned = os.environ.get(ENV_CODE_VERSION)
    if pinned:
        return pinned
    from hairlab import __version__

    commit = _source_commit()
    return f"hairlab {__version__}" + (f"+g{commit}" if commit else "")


def job_key(cfg: Any, version: str | None = None) -> str:
    """The job's key: sha256 (hex) of its result parameters and the code version."""
    payload = {"code": code_version() if version is None else version, "config": result_params(cfg)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def differing(stored: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Keys whose value differs between two result-parameter dicts (missing counts as differing)."""
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
