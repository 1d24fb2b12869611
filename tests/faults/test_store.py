"""Store faults: a fresh store raced by concurrent commands, a read-only store or working
directory, a store locked by another process. Real processes, a real SQLite store."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import faultkit as fk
import pytest

#: Seconds hairlab waits for a locked store in these tests (``$HAIRLAB_STORE_WAIT_S``).
SHORT_WAIT = "2"


def _make_store(work: Path) -> str:
    """A real, migrated MLflow store in ``work`` (as the first ``hairlab run`` would leave it)."""
    from hairlab.tracking import store

    uri = fk.sqlite_uri(work)
    client = store.client(uri)
    store.ensure_experiment(client, "hairlab", uri)
    return uri


@pytest.mark.slow
def test_fresh_store_opened_by_many_processes_at_once(workdir: Path) -> None:
    """Four processes open one not-yet-existing store at the same moment: all get a working store."""
    uri = fk.sqlite_uri(workdir)
    code = ("import sys; from hairlab.tracking import store; c = store.client(sys.argv[1]); "
            "store.ensure_experiment(c, 'hairlab', sys.argv[1]); print('ok', len(c.search_experiments()))")
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], cwd=workdir, env=fk.child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    failed = [o for p, o in zip(procs, outs, strict=True) if p.returncode != 0]
    assert not failed, "a process failed on the fresh store:\n" + "\n---\n".join(o[-1500:] for o in failed)
    assert all(o.strip().endswith("ok 2") for o in outs), outs  # Default + hairlab, one of each
    assert (workdir / "mlflow.db.lock").exists(), "the store was created under its lock file"


@pytest.mark.slow
def test_first_use_commands_started_at_once(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """Two runs and a sweep started together in a directory with no mlflow.db all succeed."""
    jobs = [fk.start([*fk.TINY, f"hydra.run.dir=outputs/run{i}"], workdir, name=f"run{i}") for i in range(2)]
    jobs.append(fk.start(["-m", *fk.TINY, "optimizer.lr=0.01,0.02", "hydra.sweep.dir=multirun/sweep"], workdir,
                         name="sweep"))
    reap.extend(jobs)
    for job in jobs:
        code = job.wait(300)
        assert code == 0, f"{job.args} exited {code}:\n{job.output()[-3000:]}"
        assert "duplicate column" not in job.output()
    runs = fk.all_runs(fk.sqlite_uri(workdir))
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    assert len(fk.parents(runs)) == 1 and len(fk.children(runs)) == 4, fk.describe(runs)
    assert {r.info.status for r in runs} == {"FINISHED"}, fk.describe(runs)


def _plain_user() -> list[str]:
    prefix = fk.plain_user_prefix()
    if prefix is None:
        pytest.skip("root here cannot drop CAP_DAC_OVERRIDE (setpriv missing or no CAP_SETPCAP)")
    return prefix


def _one_line_error(code: int, out: str, *needles: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("hairlab: ")]
    assert code == 2, f"exit {code}, expected 2:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    assert len(lines) == 1, out[-3000:]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_read_only_store_file(workdir: Path, tmp_path: Path, sweep: bool) -> None:
    """A store this user cannot write: one line naming it read-only, and no run created."""
    prefix = _plain_user()
    uri = _make_store(workdir)
    db = workdir / "mlflow.db"
    db.chmod(0o444)
    args = ["-m", *fk.TINY, "optimizer.lr=0.01,0.02"] if sweep else fk.TINY
    code, out = fk.run(args, workdir, prefix=prefix, log_dir=tmp_path)
    _one_line_error(code, out, "read-only", str(db))
    db.chmod(0o644)
    assert fk.all_runs(uri) == []


def test_read_only_working_directory(workdir: Path, tmp_path: Path) -> None:
    """A working directory this user cannot write: one line naming it read-only."""
    prefix = _plain_user()
    workdir.chmod(0o555)
    try:
        code, out = fk.run(fk.TINY, workdir, prefix=prefix, log_dir=tmp_path)
    finally:
        workdir.chmod(0o755)
    _one_line_error(code, out, "read-only", str(workdir))
    assert not (workdir / "mlflow.db").exists()


def test_read_only_store_directory(workdir: Path, tmp_path: Path) -> None:
    """``tracking.uri`` in a directory this user cannot write: one line naming it read-only."""
    prefix = _plain_user()
    locked = tmp_path / "readonly-store"
    locked.mkdir(mode=0o555)
    code, out = fk.run([*fk.TINY, f"tracking.uri=sqlite:///{locked}/mlflow.db"], workdir, prefix=prefix,
                       log_dir=tmp_path)
    _one_line_error(code, out, "read-only", str(locked))


@contextlib.contextmanager
def _exclusive_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's exclusive lock on ``db`` (as a long write by another process would)."""
    conn = sqlite3.connect(db, timeout=1, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()


def test_locked_store_gives_up_in_one_line(workdir: Path) -> None:
    """A store locked for longer than $HAIRLAB_STORE_WAIT_S: one line saying locked, no run."""
    uri = _make_store(workdir)
    with _exclusive_lock(workdir / "mlflow.db"):
        code, out = fk.run(fk.TINY, workdir, env=fk.child_env(HAIRLAB_STORE_WAIT_S=SHORT_WAIT), timeout=180)
    _one_line_error(code, out, "locked", str(workdir / "mlflow.db"), "HAIRLAB_STORE_WAIT_S")
    assert fk.all_runs(uri) == []


@pytest.mark.slow
def test_locked_store_is_retried_until_free(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """A lock released while hairlab waits: the run goes ahead and finishes."""
    uri = _make_store(workdir)
    with _exclusive_lock(workdir / "mlflow.db"):
        job = fk.start(fk.TINY, workdir, env=fk.child_env(HAIRLAB_STORE_WAIT_S="120"))
        reap.append(job)
        time.sleep(6)  # longer than one SQLite busy wait (5 s): hairlab must have retried
        assert job.running(), job.output()[-3000:]
    code = job.wait(180)
    assert code == 0, job.output()[-3000:]
    (run,) = fk.all_runs(uri)
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_store_wait_must_be_a_number(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hairlab.errors import HairlabError
    from hairlab.tracking import store

    monkeypatch.setenv(store.ENV_WAIT, value)
    with pytest.raises(HairlabError, match="HAIRLAB_STORE_WAIT_S"):
        store.client(fk.sqlite_uri(tmp_path))
    assert not (tmp_path / "mlflow.db").exists()


def test_lock_file_is_beside_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hairlab.tracking import store

    assert store.lock_path(tmp_path / "x" / "mlflow.db") == tmp_path / "x" / "mlflow.db.lock"
    monkeypatch.delenv(store.ENV_WAIT, raising=False)
    assert store.wait_s() == store.DEFAULT_WAIT_S


@pytest.mark.slow
def test_compare_after_kill_9_shows_the_run_killed(workdir: Path, reap: list[fk.Hairlab]) -> None:
    """``kill -9`` leaves a RUNNING ghost; the next ``hairlab compare`` closes it before showing it."""
    import json

    job = fk.start([*fk.LONG, *fk.FAST_FLUSH], workdir)
    reap.append(job)
    (run_id,) = fk.wait_running(workdir / "mlflow.db", job)
    job.signal(signal.SIGKILL)
    job.wait(30)
    assert fk.client(fk.sqlite_uri(workdir)).get_run(run_id).info.status == "RUNNING"
    res = subprocess.run([sys.executable, "-m", "hairlab", "compare", "--format", "json"], cwd=workdir,
                         env=fk.child_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    (row,) = json.loads(res.stdout)
    assert row["status"] == "KILLED", row
    run = fk.client(fk.sqlite_uri(workdir)).get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["hairlab.reconciled"] == "process gone"
    fk.assert_metric_logged(fk.sqlite_uri(workdir), run_id, "train/loss")


def test_compare_reads_a_read_only_store(workdir: Path) -> None:
    """Looking is not writing: ``compare`` reads a store this user cannot write (and reconciles nothing)."""
    prefix = _plain_user()
    uri = _make_store(workdir)
    c = fk.client(uri)
    run = c.create_run(c.get_experiment_by_name("hairlab").experiment_id, run_name="archived")
    c.log_metric(run.info.run_id, "val/acc", 0.5, step=1)
    c.set_terminated(run.info.run_id)
    (workdir / "mlflow.db").chmod(0o444)
    workdir.chmod(0o555)
    try:
        res = subprocess.run([*prefix, sys.executable, "-m", "hairlab", "compare", "-f", "csv"], cwd=workdir,
                             env=fk.child_env(), capture_output=True, text=True, timeout=120)
    finally:
        workdir.chmod(0o755)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "archived" in res.stdout and "0.5" in res.stdout
