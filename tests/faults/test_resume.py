"""A sweep resumes: ``tracking.resume=true`` skips FINISHED job keys and continues killed jobs.

Real sweeps (basic launcher, joblib, submitit's real local executor) against a real SQLite
store: a sweep is killed with a real signal mid-way, run again with the switch, and the
store is checked: every job key has exactly one FINISHED run, only the unfinished jobs were
trained (counted from the store and from the sweep's closing line), the killed job went on
from its own checkpoint, and the new parent links the runs it reused.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import faultkit as fk
import pytest

# A commit landing in this checkout mid-test must not change the job keys under the test.
ENV = fk.child_env(HAIRLAB_CODE_VERSION="faults-test")
#: Jobs of a few seconds: 20 epochs of 2 steps, a checkpoint after each epoch.
JOB = [*fk.TINY[:-1], "trainer.epochs=20", *fk.FAST_FLUSH]
LRS = "optimizer.lr=0.001,0.002,0.003"


def _line(output: str) -> tuple[int, int, int]:
    m = re.search(r"\[hairlab\] sweep \S+: (\d+) trained, (\d+) resumed, (\d+) skipped", output)
    assert m, f"no sweep summary line in:\n{output[-3000:]}"
    return int(m[1]), int(m[2]), int(m[3])


def _epochs(db: Path, run_id: str) -> int:
    return len(fk.sqlite_rows(db, "SELECT step FROM metrics WHERE run_uuid = ? AND key = 'epoch'", (run_id,)))


def _kill_after_first_job(job: fk.Hairlab, db: Path) -> None:
    """SIGTERM once job 0 FINISHED and job 1 has checkpointed at least one epoch."""

    def ready() -> bool:
        if not job.running():
            raise AssertionError(f"sweep ended before it could be interrupted:\n{job.output()[-3000:]}")
        done = fk.sqlite_rows(db, "SELECT run_uuid FROM runs WHERE status = 'FINISHED' AND name LIKE '%lr=%'")
        running = fk.running_with_metric(db, "epoch")
        return bool(done) and any(_epochs(db, r) >= 2 for r in running)

    fk.wait_for(ready, 180, "job 0 FINISHED and job 1 past its second epoch")
    job.signal(signal.SIGTERM)
    assert job.wait(120) == 143, job.output()[-3000:]
    job.wait_group_gone()


@pytest.mark.slow
def test_basic_sweep_resumes_trains_only_unfinished_jobs(workdir: Path, reap: list[fk.Hairlab]) -> None:
    db, uri = workdir / "mlflow.db", fk.sqlite_uri(workdir)
    first = fk.start(["-m", *JOB, LRS], workdir, env=ENV)
    reap.append(first)
    _kill_after_first_job(first, db)
    before = fk.all_runs(uri)
    fk.assert_none_running(before)
    killed = [r for r in fk.children(before) if r.info.status == "KILLED"]
    assert len(killed) == 1, fk.describe(before)

    code, out = fk.run(["-m", *JOB, LRS, "tracking.resume=true"], workdir, env=ENV)
    assert code == 0, out[-3000:]
    assert _line(out) == (1, 1, 1)  # job 2 trained, job 1 resumed, job 0 skipped
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    fk.assert_one_finished_per_key(runs, keys=3)
    parent = next(p for p in fk.parents(runs) if p.data.tags.get("hairlab.resume") == "true")
    new = fk.children(runs, parent)
    assert len(new) == 2, fk.describe(runs)  # the skipped job created no run
    resumed = [r for r in new if r.data.tags.get("hairlab.resumed_run")]
    assert [r.data.tags["hairlab.resumed_run"] for r in resumed] == [killed[0].info.run_id]
    assert resumed[0].data.tags["hairlab.job_key"] == killed[0].data.tags["hairlab.job_key"]
    assert "resumed_from" in resumed[0].data.tags  # continued from the killed job's checkpoint
    reused = parent.data.tags["hairlab.reused_runs"].split(",")
    finished_before = [r.info.run_id for r in fk.children(before) if r.info.status == "FINISHED"]
    assert reused == finished_before
    assert fk.client(uri).get_run(reused[0]).data.tags["hairlab.reused_by"] == parent.info.run_id

    # without the switch a re-run trains everything again, as before
    code, out = fk.run(["-m", *fk.TINY, *fk.FAST_FLUSH, "optimizer.lr=0.001"], workdir, env=ENV)
    assert code == 0 and _line(out) == (1, 0, 0), out[-3000:]


@pytest.mark.slow
def test_joblib_sweep_resumes(workdir: Path, reap: list[fk.Hairlab]) -> None:
    db, uri = workdir / "mlflow.db", fk.sqlite_uri(workdir)
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    code, out = fk.run(["-m", *JOB, "optimizer.lr=0.001", *launcher], workdir, env=ENV)
    assert code == 0, out[-3000:]
    job = fk.start(["-m", *JOB, LRS, *launcher, "tracking.resume=true"], workdir, env=ENV)
    reap.append(job)
    fk.wait_for(lambda: any(_epochs(db, r) >= 2 for r in fk.running_with_metric(db, "epoch")), 180,
                "a joblib job past its second epoch")
    job.signal(signal.SIGINT)
    assert job.wait(120) == 130, job.output()[-3000:]
    job.wait_group_gone()
    fk.assert_none_running(fk.all_runs(uri))

    code, out = fk.run(["-m", *JOB, LRS, *launcher, "tracking.resume=true"], workdir, env=ENV)
    assert code == 0, out[-3000:]
    trained, resumed, skipped = _line(out)
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    fk.assert_one_finished_per_key(runs, keys=3)
    last = max(fk.parents(runs), key=lambda r: r.info.start_time)
    assert len(fk.children(runs, last)) == trained + resumed
    assert trained + resumed + skipped == 3 and skipped >= 1 and resumed >= 1, out[-2000:]


@pytest.mark.slow
def test_submitit_local_sweep_skips_finished_jobs(workdir: Path) -> None:
    uri = fk.sqlite_uri(workdir)
    code, out = fk.run(["-m", *fk.TINY, *fk.FAST_FLUSH, "optimizer.lr=0.001"], workdir, env=ENV)
    assert code == 0, out[-3000:]
    submitit = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    code, out = fk.run(["-m", *fk.TINY, *fk.FAST_FLUSH, "optimizer.lr=0.001,0.002", *submitit,
                        "tracking.resume=true"], workdir, env=ENV, timeout=400)
    assert code == 0, out[-3000:]
    assert _line(out) == (1, 0, 1)
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    fk.assert_one_finished_per_key(runs, keys=2)
    last = max(fk.parents(runs), key=lambda r: r.info.start_time)
    assert len(last.data.tags["hairlab.reused_runs"].split(",")) == 1


def test_resume_with_another_config_is_refused(workdir: Path) -> None:
    """``trainer.resume`` of a checkpoint written with another lr: one line naming it, no run."""
    uri = fk.sqlite_uri(workdir)
    code, out = fk.run([*fk.TINY, "hydra.run.dir=outputs/first"], workdir, env=ENV)
    assert code == 0, out[-3000:]
    code, out = fk.run([*fk.TINY, "trainer.resume=outputs/first", "optimizer.lr=0.5",
                        "hydra.run.dir=outputs/second"], workdir, env=ENV)
    assert code == 2, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("hairlab:")]
    assert len(errors) == 1 and "optimizer.lr" in errors[0] and "resume_mismatch=allow" in errors[0], out
    assert "Traceback" not in out
    assert len(fk.all_runs(uri)) == 1  # the refused job created no run

    code, out = fk.run([*fk.TINY, "trainer.resume=outputs/first", "optimizer.lr=0.5",
                        "trainer.resume_mismatch=allow", "hydra.run.dir=outputs/third"], workdir, env=ENV)
    assert code == 0, out[-3000:]
    assert [r.info.status for r in fk.all_runs(uri)] == ["FINISHED", "FINISHED"]


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_from_its_checkpoint(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """The OOM killer / power cut: the ghost is reconciled at the resumed sweep's start, then continued."""
    db, uri = workdir / "mlflow.db", fk.sqlite_uri(workdir)
    job = fk.start(["-m", *JOB, "optimizer.lr=0.001"], workdir, env=ENV)
    reap.append(job)
    fk.wait_for(lambda: any(_epochs(db, r) >= 2 for r in fk.running_with_metric(db, "epoch")), 180,
                "the job past its second epoch")
    job.signal(signal.SIGKILL)
    job.wait(60)
    (ghost,) = [r for r in fk.children(fk.all_runs(uri)) if r.info.status == "RUNNING"]

    code, out = fk.run(["-m", *JOB, "optimizer.lr=0.001", "tracking.resume=true"], workdir, env=ENV)
    assert code == 0, out[-3000:]
    assert _line(out) == (0, 1, 0)
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_one_finished_per_key(runs, keys=1)
    old = fk.client(uri).get_run(ghost.info.run_id)
    assert old.info.status == "KILLED" and old.data.tags["hairlab.reconciled"] == "process gone"
    (new,) = [r for r in fk.children(runs) if r.info.status == "FINISHED"]
    assert new.data.tags["hairlab.resumed_run"] == ghost.info.run_id
