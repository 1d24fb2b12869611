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

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here drives real processes: mark it `faults` and `slow` (CI runs them, the fast set not)."""
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


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
