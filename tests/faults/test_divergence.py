"""Divergence means any non-finite loss, and bad values never create a run.

Real ``hairlab run`` processes against a real SQLite store: Adam at ``optimizer.lr=1e9``
ends tagged diverged (today's main left it FINISHED with a NaN val/loss, ranked best by
``compare``); ``trainer.epochs=many`` and ``trainer.grad_clip=-1`` are refused in one line
with exit status 2 before any run (or sweep parent) exists.
"""

from __future__ import annotations

import math
from pathlib import Path

import faultkit as fk
import pytest


def test_adam_at_a_huge_lr_is_tagged_diverged(workdir: Path) -> None:
    code, out = fk.run(["-m", *fk.TINY, "trainer.epochs=2", "optimizer.lr=1e9"], workdir)
    uri = fk.sqlite_uri(workdir)
    (run,) = fk.children(fk.all_runs(uri))
    assert run.data.tags.get("diverged") == "true", (run.data.tags, out[-2000:])
    assert run.info.status == "FINISHED"
    assert code != 0, out[-2000:]  # tracking.fail_on_diverged (default true)
    val = fk.client(uri).get_metric_history(run.info.run_id, "val/loss")
    # whatever went non-finite first (train or eval loss), no finite "result" hides it
    if val and all(math.isfinite(m.value) for m in val):
        assert run.data.tags.get("diverged_metric") is None
    if any(not math.isfinite(m.value) for m in val):
        assert run.data.tags.get("diverged_metric") == "val/loss", run.data.tags


@pytest.mark.parametrize(("override", "key"), [("trainer.epochs=many", "trainer.epochs"),
                                               ("trainer.grad_clip=-1", "trainer.grad_clip")])
@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_bad_values_never_create_a_run(workdir: Path, override: str, key: str, sweep: bool) -> None:
    args = (["-m", "optimizer.lr=0.001,0.002"] if sweep else []) + [*fk.TINY, override]
    code, out = fk.run(args, workdir)
    assert code == 2, out[-3000:]
    lines = [line for line in out.splitlines() if line.strip() and "INFO" not in line]
    assert len(lines) == 1 and lines[0].startswith("hairlab:") and key in lines[0], out[-3000:]
    assert "Traceback" not in out
    # no store at all, or one without a single run (opening a missing store would create it)
    assert not (workdir / "mlflow.db").exists() or fk.all_runs(fk.sqlite_uri(workdir)) == []
