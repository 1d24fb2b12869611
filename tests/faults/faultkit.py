"""What every fault test needs: real ``hairlab`` processes, real signals, and store checks.

A fault test starts ``python -m hairlab run ...`` as a real subprocess in its own process
group (so a signal reaches the whole job, workers included, as a terminal's Ctrl-C or
SLURM's SIGTERM would), waits until the store shows the run working, injects the fault,
then reads the store and asserts the invariants of issue 10:

- :func:`assert_none_running`: no run is left RUNNING after its processes have exited;
- :func:`assert_children_under_own_parent`: every child sits under its own sweep's parent;
- :func:`assert_metric_logged`: metrics logged before the interrupt are there;
- :func:`finished_per_job_key`: FINISHED runs per ``hairlab.job_key`` (exactly one each
  after a resumed sweep).

Polling a SQLite store goes through :mod:`sqlite3` read-only, never through MLflow, so that
watching a fresh directory cannot itself create or migrate ``mlflow.db``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: A training job that takes a second or two: tiny synthetic data, a quarter-width HairNet.
TINY = ["dataset=synthetic", "dataset.train_size=64", "dataset.test_size=32", "trainer.batch_size=32",
        "model.width_multiplier=0.25", "trainer.progress=false", "hw_targets=[]", "trainer.epochs=1"]
#: The same job made long (hundreds of epochs of 2 steps): it trains until a test interrupts it.
LONG = [*TINY[:-1], "trainer.epochs=500"]
#: Store writes every 0.2 s, so a fault test sees metrics soon after they are logged.
FAST_FLUSH = ["tracking.flush_interval_s=0.2"]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no inherited run id or store, one torch thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI")}
    env.update({"COLUMNS": "200", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Hairlab:
    """A ``python -m hairlab ...`` process in its own session (process group = its pid)."""

    args: list[str]
    cwd: Path
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int = signal.SIGINT) -> None:
        """Send ``sig`` to the whole process group, as a terminal or ``kill -- -PGID`` does."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 120) -> int:
        """Wait for the process to exit and return its status (fails the test on a hang)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"hairlab did not exit within {timeout:.0f}s:\n{self.output()[-3000:]}") from None

    def wait_group_gone(self, timeout: float = 60) -> None:
        """Wait until no process of the group is left (joblib/loky workers included)."""
        wait_for(lambda: not group_alive(self.proc.pid), timeout, f"process group {self.proc.pid} to exit")

    def kill(self) -> None:
        """SIGKILL the group and reap the leader (cleanup; never fails)."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)

    def output(self) -> str:
        """Combined stdout and stderr so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc.poll() is None


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (zombies of reaped leaders excluded)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds on zombies too: look for a live member.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def start(args: Sequence[str], cwd: Path, *, env: dict[str, str] | None = None, command: str = "run",
          name: str = "hairlab", prefix: Sequence[str] = (), log_dir: Path | None = None,
          python: str = sys.executable) -> Hairlab:
    """Start ``python -m hairlab COMMAND ARGS`` in ``cwd`` as a new session; output to a log file.

    ``prefix`` goes before the interpreter (e.g. :func:`plain_user_prefix`); the log goes to
    ``log_dir`` (default ``cwd``, which a read-only test cannot use); ``python`` may be another
    environment's interpreter (e.g. the ``child_env`` fixture's, with test plugins installed).
    """
    cwd.mkdir(parents=True, exist_ok=True)
    log = (log_dir or cwd) / f"{name}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*prefix, python, "-m", "hairlab", command, *args], cwd=cwd,
                                env=env or child_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Hairlab(list(args), cwd, proc, log)


def run(args: Sequence[str], cwd: Path, *, env: dict[str, str] | None = None, command: str = "run",
        timeout: float = 300, prefix: Sequence[str] = (), log_dir: Path | None = None,
        python: str = sys.executable) -> tuple[int, str]:
    """Run ``hairlab COMMAND ARGS`` to the end; returns (status, combined output)."""
    job = start(args, cwd, env=env, command=command, prefix=prefix, log_dir=log_dir, python=python)
    code = job.wait(timeout)
    return code, job.output()


# -- reading a SQLite store while it is written ------------------------------------------------
def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def sqlite_rows(db: Path, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on ``db`` opened read-only; [] while the file or its tables do not exist."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(_ro(db)) as conn:
            return list(conn.execute(sql, tuple(params)))
    except sqlite3.OperationalError:
        return []  # no schema yet, or locked by a writer this instant


def running_with_metric(db: Path, metric: str = "train/loss", count: int = 1) -> list[str]:
    """Ids of RUNNING runs that logged ``metric`` (non-empty once at least ``count`` exist)."""
    rows = sqlite_rows(db, "SELECT DISTINCT r.run_uuid FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid "
                           "WHERE r.status = 'RUNNING' AND m.key = ?", (metric,))
    ids = [r[0] for r in rows]
    return ids if len(ids) >= count else []


def wait_running(db: Path, job: Hairlab | None = None, *, metric: str = "train/loss", count: int = 1,
                 timeout: float = 120) -> list[str]:
    """Wait until ``count`` runs are RUNNING with ``metric`` logged; fails early if ``job`` exits."""

    def ready() -> list[str]:
        if job is not None and not job.running():
            raise AssertionError(f"hairlab exited ({job.proc.returncode}) before a run was training:\n"
                                 f"{job.output()[-3000:]}")
        return running_with_metric(db, metric, count)

    return wait_for(ready, timeout, f"{count} RUNNING run(s) with {metric} in {db}")


# -- reading the store after the fact (any MLflow URI) ------------------------------------------
def sqlite_uri(cwd: Path) -> str:
    return f"sqlite:///{(cwd / 'mlflow.db').resolve()}"


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str, experiment: str | None = None) -> list[Any]:
    """Every run in the store (or in ``experiment``), deleted ones excluded."""
    from mlflow.entities import ViewType

    c = client(uri)
    exps = c.search_experiments(view_type=ViewType.ALL)
    ids = [e.experiment_id for e in exps if experiment is None or e.name == experiment]
    if not ids:
        return []
    runs: list[Any] = []
    token = None
    while True:
        page = c.search_runs(ids, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def is_parent(run: Any) -> bool:
    return run.data.tags.get("hairlab.sweep_parent") == "true"


def parents(runs: Iterable[Any]) -> list[Any]:
    return [r for r in runs if is_parent(r)]


def children(runs: Iterable[Any], parent: Any | None = None) -> list[Any]:
    """Job runs (of ``parent`` when given)."""
    kids = [r for r in runs if not is_parent(r)]
    if parent is not None:
        kids = [r for r in kids if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return kids


def describe(runs: Iterable[Any]) -> str:
    """One line per run, for assertion messages."""
    return "\n".join(f"  {r.info.run_id[:8]} {r.info.status:9} {r.info.run_name} "
                     f"parent={str(r.data.tags.get('mlflow.parentRunId'))[:8]} "
                     f"sweep={r.data.tags.get('hairlab.sweep_id')} key={r.data.tags.get('hairlab.job_key', '')[:10]}"
                     for r in runs)


def assert_none_running(runs: Sequence[Any]) -> None:
    """No run says RUNNING (call after every process of the test has exited)."""
    stuck = [r for r in runs if r.info.status == "RUNNING"]
    assert not stuck, f"{len(stuck)} run(s) left RUNNING:\n{describe(stuck)}"


def assert_children_under_own_parent(runs: Sequence[Any]) -> None:
    """Every child of a sweep names an existing sweep parent, and that parent is of its own sweep."""
    by_id = {r.info.run_id: r for r in runs}
    wrong = []
    for run in children(runs):
        sweep_id = run.data.tags.get("hairlab.sweep_id")
        parent_id = run.data.tags.get("mlflow.parentRunId")
        if sweep_id is None and parent_id is None:
            continue  # a single run
        parent = by_id.get(parent_id or "")
        if parent is None or not is_parent(parent) or parent.data.tags.get("hairlab.sweep_id") != sweep_id:
            wrong.append(run)
    assert not wrong, f"{len(wrong)} child run(s) not under their own sweep's parent:\n{describe(wrong)}\n" \
                      f"all runs:\n{describe(runs)}"


def assert_metric_logged(uri: str, run_id: str, key: str = "train/loss", at_least: int = 1) -> list[Any]:
    """The run kept at least ``at_least`` points of ``key`` (logged before the fault)."""
    history = client(uri).get_metric_history(run_id, key)
    assert len(history) >= at_least, f"run {run_id} has {len(history)} point(s) of {key}, expected >= {at_least}"
    return history


def finished_per_job_key(runs: Iterable[Any]) -> Counter[str]:
    """How many FINISHED job runs each ``hairlab.job_key`` has."""
    return Counter(r.data.tags.get("hairlab.job_key", "?") for r in children(runs) if r.info.status == "FINISHED")


def assert_one_finished_per_key(runs: Sequence[Any], keys: int | None = None) -> Counter[str]:
    """Each job key has exactly one FINISHED run (and there are ``keys`` of them when given)."""
    counts = finished_per_job_key(runs)
    assert "?" not in counts, f"FINISHED runs without hairlab.job_key:\n{describe(runs)}"
    dup = {k: n for k, n in counts.items() if n != 1}
    assert not dup, f"job keys with more than one FINISHED run: {dup}\n{describe(runs)}"
    if keys is not None:
        assert len(counts) == keys, f"{len(counts)} job keys FINISHED, expected {keys}:\n{describe(runs)}"
    return counts


# -- running without root's override of file permissions ---------------------------------------
def plain_user_prefix() -> list[str] | None:
    """argv prefix under which read-only files and directories are read-only to the command.

    Not root: [] (permissions already apply). Root: ``setpriv`` dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set, so root obeys mode bits like any user (a switch
    to ``nobody`` would not reach an interpreter installed under /root). None when that is not
    possible here (no setpriv, or no CAP_SETPCAP): the test must skip.
    """
    import shutil

    if os.geteuid() != 0:
        return []
    tool = shutil.which("setpriv")
    if tool is None:
        return None
    prefix = [tool, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None
