"""The ghost rule on a real MLflow SQLite store: what reconcile closes, and what it never touches."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hairlab.tracking import liveness
from hairlab.tracking.reconcile import HEARTBEAT_STALE, PROCESS_GONE, TAG, ghost_reason, reconcile


@pytest.fixture
def client(tmp_path: Path):
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return c, c.create_experiment("x")


def _dead_pid() -> tuple[int, str | None]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = liveness.process_start(proc.pid)
    proc.wait()
    return proc.pid, start


def test_rules() -> None:
    now = time.time()
    mine = liveness.owner_tags()
    assert ghost_reason(mine, stale_after_s=600) is None  # this very process
    pid, _ = _dead_pid()
    assert ghost_reason({**mine, liveness.PID: str(pid)}, stale_after_s=600) == PROCESS_GONE
    # a reused pid: same number, another process (start time differs)
    assert ghost_reason({**mine, liveness.PID_START: "1"}, stale_after_s=600) == PROCESS_GONE
    assert ghost_reason({**mine, liveness.BOOT_ID: "an-earlier-boot"}, stale_after_s=600) == PROCESS_GONE
    # same hostname, another pid namespace (a container): judged by its heartbeat, like another host
    boxed = {**mine, liveness.PID: str(pid), liveness.PID_NS: "pid:[1]", liveness.HEARTBEAT: f"{now:.0f}"}
    if liveness.pid_namespace() is not None:
        assert ghost_reason(boxed, stale_after_s=600, now=now) is None
    other = {liveness.HOST: "elsewhere", liveness.PID: "1", liveness.HEARTBEAT: f"{now - 30:.0f}"}
    assert ghost_reason(other, stale_after_s=600, now=now) is None  # live on another host
    assert ghost_reason({**other, liveness.HEARTBEAT: f"{now - 700:.0f}"}, stale_after_s=600, now=now) == HEARTBEAT_STALE
    assert ghost_reason({}, stale_after_s=600) is None  # not hairlab's: left alone


def test_reconcile_closes_only_ghosts(client) -> None:
    c, exp = client
    pid, start = _dead_pid()
    here = liveness.owner_tags()
    dead = {**here, liveness.PID: str(pid), **({liveness.PID_START: start} if start else {})}
    runs = {
        "dead": dead,
        "alive": liveness.owner_tags(os.getpid()),
        "remote-live": {liveness.HOST: "elsewhere", liveness.PID: "7", liveness.HEARTBEAT: f"{time.time():.0f}"},
        "remote-stale": {liveness.HOST: "elsewhere", liveness.PID: "7", liveness.HEARTBEAT: f"{time.time() - 9999:.0f}"},
        "foreign": {},
    }
    ids = {name: c.create_run(exp, run_name=name, tags=tags).info.run_id for name, tags in runs.items()}
    finished = c.create_run(exp, run_name="done", tags=dead).info.run_id
    c.set_terminated(finished, "FINISHED")

    closed = reconcile(c, [exp], stale_after_s=600)

    assert sorted(closed) == sorted([ids["dead"], ids["remote-stale"]])
    status = {name: c.get_run(run_id) for name, run_id in ids.items()}
    assert status["dead"].info.status == "KILLED" and status["dead"].data.tags[TAG] == PROCESS_GONE
    assert status["remote-stale"].info.status == "KILLED" and status["remote-stale"].data.tags[TAG] == HEARTBEAT_STALE
    for name in ("alive", "remote-live", "foreign"):
        assert status[name].info.status == "RUNNING" and TAG not in status[name].data.tags
    assert c.get_run(finished).info.status == "FINISHED"
    assert reconcile(c, [exp], stale_after_s=600) == []  # nothing left to do


def test_the_writer_thread_keeps_the_heartbeat_fresh(client) -> None:
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    c, exp = client
    run_id = c.create_run(exp, tags={**liveness.owner_tags(), liveness.HEARTBEAT: "0"}).info.run_id
    tracker = MLflowTracker(c, run_id, flush_interval_s=0.05, heartbeat_s=0.05, plots=False)
    try:
        deadline = time.monotonic() + 60  # a bounded wait for the first beat, not a timing assertion
        while c.get_run(run_id).data.tags[liveness.HEARTBEAT] == "0":
            assert time.monotonic() < deadline, "no heartbeat within 60 s"
            time.sleep(0.05)
    finally:
        tracker.close("FINISHED")
    assert float(c.get_run(run_id).data.tags[liveness.HEARTBEAT]) > 0
