"""Fixtures of the fault-injection suite (see faultkit.py for the helpers)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# This directory is a package, so this module is `faults.conftest` and never replaces the
# `conftest` that tests/*.py import from; the suite's modules still just `import faultkit`.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultkit import Hairlab


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh directory to start hairlab from: no mlflow.db, no multirun/ yet."""
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def reap() -> Iterator[list[Hairlab]]:
    """Append every started job here: whatever a failing test leaves running is SIGKILLed."""
    jobs: list[Hairlab] = []
    yield jobs
    for job in jobs:
        job.kill()
