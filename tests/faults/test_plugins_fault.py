"""A broken plugin cannot stop hairlab: with a package installed whose plugins raise at import
(``SystemExit(0)`` among them) or from a hook, a real sweep still trains and records every job."""

from __future__ import annotations

import subprocess
from pathlib import Path

import faultkit as fk
import pytest

BROKEN = Path(__file__).resolve().parents[1] / "fixtures" / "broken-plugin"


@pytest.fixture(scope="module")
def broken_env(child_env: Path) -> Path:
    """The suite's child environment with the broken-plugin package really pip-installed."""
    subprocess.run([str(child_env), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(BROKEN)], check=True, capture_output=True, text=True)
    return child_env


@pytest.mark.slow
def test_sweep_trains_with_plugins_that_exit_or_raise(broken_env: Path, workdir: Path) -> None:
    code, out = fk.run(["-m", *fk.TINY, "optimizer.lr=0.01,0.02"], workdir, python=str(broken_env))
    assert code == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    runs = fk.all_runs(fk.sqlite_uri(workdir))
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    (parent,) = fk.parents(runs)
    kids = fk.children(runs, parent)
    assert len(kids) == 2 and {r.info.status for r in kids} == {"FINISHED"}, fk.describe(runs)
    assert all("train/loss" in r.data.metrics for r in kids)
