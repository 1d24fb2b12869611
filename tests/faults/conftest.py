"""Fixtures of the fault-injection suite (see faultkit.py for the helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
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
