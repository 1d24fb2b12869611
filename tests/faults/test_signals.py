"""Interrupts are recorded: SIGINT/SIGTERM to the real process group end every run KILLED.

Each test starts a real ``hairlab run`` (single run, sequential sweep, joblib sweep), waits
until the store shows it training, sends a real signal to its process group (as a
terminal's Ctrl-C, ``timeout`` or SLURM do), then reads the SQLite store: no run left
RUNNING, the metrics logged before the signal kept, exit status 130 / 143.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import faultkit as fk
import pytest

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _interrupt(job: fk.Hairlab, sig: int, db: Path, count: int = 1) -> list[str]:
    running = fk.wait_running(db, job, count=count)
    job.signal(sig)
    code = job.wait(120)
    job.wait_group_gone()
    assert code == EXIT[sig], f"exit {code}, expected {EXIT[sig]}:\n{job.output()[-3000:]}"
    assert "Traceback" not in job.output(), job.output()[-3000:]
    return running


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_single_run_interrupted_is_killed(workdir: Path, reap: list[fk.Hairlab], sig: int) -> None:
    job = fk.start([*fk.LONG, *fk.FAST_FLUSH], workdir)
    reap.append(job)
    running = _interrupt(job, sig, workdir / "mlflow.db")
    uri = fk.sqlite_uri(workdir)
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    assert [r.info.status for r in runs] == ["KILLED"], fk.describe(runs)
    fk.assert_metric_logged(uri, running[0], "train/loss")
    assert runs[0].data.tags.get("hairlab.error", "").startswith("Interrupted"), runs[0].data.tags


def test_second_sigint_during_shutdown_leaves_nothing_running(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """The impatient double Ctrl-C: the second one arrives while the first is closing the run."""
    job = fk.start([*fk.LONG, *fk.FAST_FLUSH], workdir)
    reap.append(job)
    fk.wait_running(workdir / "mlflow.db", job)
    job.signal(signal.SIGINT)
    time.sleep(0.05)
    job.signal(signal.SIGINT)
    code = job.wait(120)
    assert code == 130, job.output()[-3000:]
    runs = fk.all_runs(fk.sqlite_uri(workdir))
    fk.assert_none_running(runs)
    assert [r.info.status for r in runs] == ["KILLED"], fk.describe(runs)


@pytest.mark.slow
def test_sequential_sweep_interrupted(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """SIGTERM (SLURM's, timeout's) in a basic-launcher sweep; SIGINT takes the same path (single run tests)."""
    sig = signal.SIGTERM
    job = fk.start(["-m", *fk.LONG, *fk.FAST_FLUSH, "optimizer.lr=0.001,0.002,0.003"], workdir)
    reap.append(job)
    running = _interrupt(job, sig, workdir / "mlflow.db")
    uri = fk.sqlite_uri(workdir)
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    (parent,) = fk.parents(runs)
    assert parent.info.status == "KILLED", fk.describe(runs)
    kids = fk.children(runs, parent)
    assert [k.info.status for k in kids] == ["KILLED"], fk.describe(runs)  # the later jobs never started
    fk.assert_metric_logged(uri, running[0], "train/loss")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_joblib_sweep_interrupted_closes_every_worker_run(workdir: Path, reap: list[fk.Hairlab], sig: int) -> None:
    job = fk.start(["-m", *fk.LONG, *fk.FAST_FLUSH, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "optimizer.lr=0.001,0.002"], workdir)
    reap.append(job)
    running = _interrupt(job, sig, workdir / "mlflow.db", count=2)
    uri = fk.sqlite_uri(workdir)
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    (parent,) = fk.parents(runs)
    assert parent.info.status == "KILLED", fk.describe(runs)
    kids = fk.children(runs, parent)
    assert sorted(k.info.status for k in kids) == ["KILLED", "KILLED"], fk.describe(runs)
    # closed by the workers themselves (the interrupt), not reconciled after their death
    assert not [k for k in kids if "hairlab.reconciled" in k.data.tags], fk.describe(kids)
    for run_id in running:
        fk.assert_metric_logged(uri, run_id, "train/loss")


@pytest.mark.slow
def test_sigterm_to_the_launching_process_only_reaches_the_workers(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """``kill <pid>`` of a joblib sweep (not its group): the workers' runs still close KILLED."""
    job = fk.start(["-m", *fk.LONG, *fk.FAST_FLUSH, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "optimizer.lr=0.001,0.002"], workdir)
    reap.append(job)
    fk.wait_running(workdir / "mlflow.db", job, count=2)
    job.proc.send_signal(signal.SIGTERM)
    assert job.wait(120) == 143, job.output()[-3000:]
    job.wait_group_gone()
    runs = fk.all_runs(fk.sqlite_uri(workdir))
    fk.assert_none_running(runs)
    assert sorted(r.info.status for r in runs) == ["KILLED"] * 3, fk.describe(runs)


def _pid_of(db: Path, run_id: str) -> int:
    rows = fk.sqlite_rows(db, "SELECT value FROM tags WHERE run_uuid = ? AND key = 'hairlab.pid'", (run_id,))
    assert rows, f"run {run_id} has no hairlab.pid tag"
    return int(rows[0][0])


def test_kill_9_leaves_a_ghost_that_the_next_run_reconciles(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """SIGKILL cannot be handled: the run stays RUNNING until hairlab next touches the experiment."""
    db, uri = workdir / "mlflow.db", fk.sqlite_uri(workdir)
    job = fk.start([*fk.LONG, *fk.FAST_FLUSH], workdir)
    reap.append(job)
    (ghost,) = fk.wait_running(db, job)
    job.signal(signal.SIGKILL)
    job.wait(60)
    assert fk.client(uri).get_run(ghost).info.status == "RUNNING"  # the fault, as it is
    code, out = fk.run([*fk.TINY, *fk.FAST_FLUSH], workdir)
    assert code == 0, out[-3000:]
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    old = fk.client(uri).get_run(ghost)
    assert old.info.status == "KILLED" and old.data.tags["hairlab.reconciled"] == "process gone"
    fk.assert_metric_logged(uri, ghost, "train/loss")


@pytest.mark.slow
def test_kill_9_of_a_joblib_worker_leaves_no_run_running(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """A worker SIGKILLed (the OOM killer): the sweep ends and its parent reconciles the dead runs."""
    db, uri = workdir / "mlflow.db", fk.sqlite_uri(workdir)
    job = fk.start(["-m", *fk.LONG, *fk.FAST_FLUSH, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "optimizer.lr=0.001,0.002"], workdir)
    reap.append(job)
    victim, *_ = fk.wait_running(db, job, count=2)
    import os

    os.kill(_pid_of(db, victim), signal.SIGKILL)
    code = job.wait(180)
    job.wait_group_gone()
    assert code != 0, job.output()[-3000:]
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    dead = fk.client(uri).get_run(victim)
    assert dead.info.status == "KILLED" and dead.data.tags["hairlab.reconciled"] == "process gone"


@pytest.mark.slow
def test_submitit_local_sweep_interrupted(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """submitit's real local executor: its tasks' runs end KILLED, and the parent too."""
    job = fk.start(["-m", *fk.LONG, *fk.FAST_FLUSH, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                    "optimizer.lr=0.001,0.002"], workdir)
    reap.append(job)
    running = _interrupt(job, signal.SIGTERM, workdir / "mlflow.db", count=2)
    uri = fk.sqlite_uri(workdir)
    runs = fk.all_runs(uri)
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    assert sorted(r.info.status for r in runs) == ["KILLED"] * 3, fk.describe(runs)
    assert not [r for r in runs if "hairlab.reconciled" in r.data.tags], fk.describe(runs)  # closed by the tasks
    for run_id in running:
        fk.assert_metric_logged(uri, run_id, "train/loss")
