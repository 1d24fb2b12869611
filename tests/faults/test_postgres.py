"""The team store for real: a throwaway PostgreSQL cluster, a real ``mlflow server`` on it, a
joblib sweep over HTTP that is SIGKILLed mid-way, then resumed with ``tracking.resume=true``.

Afterwards the store must hold: no run RUNNING, every child under its own sweep's parent,
exactly one FINISHED run per job key, and the resumed sweep trained only the unfinished jobs.

PostgreSQL comes from Debian's ``postgresql`` package (``.ci/run`` installs it). Without its
binaries the test skips, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import faultkit as fk
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from mlflow_server import free_port, mlflow_server

pytestmark = pytest.mark.slow

#: Two quick jobs (1 epoch) run first; two longer ones (6 epochs) are running when the sweep is killed.
SWEEP = ["-m", *fk.TINY[:-1], *fk.FAST_FLUSH, "trainer.epochs=1,6", "optimizer.lr=0.01,0.02",
         "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracking.experiment=team"]


def _pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(n) for n in re.findall(r"\d+", p.split("/")[4])])
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _as_db_user() -> tuple[list[str], int, int]:
    """(argv prefix, uid, gid) to run the server as: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            prefix = [shutil.which("setpriv") or "setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                      "--clear-groups"]
            return prefix, entry.pw_uid, entry.pw_gid
    pytest.fail("running as root with neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1 with an empty database; yields its SQLAlchemy URI."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs PostgreSQL for the team-store test: apt-get install postgresql")
        pytest.skip("PostgreSQL binaries not found (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg (the dev extra) is SQLAlchemy's PostgreSQL driver")
    prefix, uid, gid = _as_db_user()
    root = Path(tempfile.mkdtemp(prefix="hairlab-pg-"))  # outside pytest's root-only tmp tree
    os.chown(root, uid, gid)
    data, port = root / "data", free_port()

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, cwd=root, timeout=120)

    try:
        init = pg(str(bindir / "initdb"), "-D", str(data), "-U", "hairlab", "-A", "trust", "-E", "UTF8", "--no-sync")
        assert init.returncode == 0, init.stdout + init.stderr
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} -c fsync=off"
        start = pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                   "-o", opts, "start")
        assert start.returncode == 0, start.stdout + start.stderr + (root / "server.log").read_text()
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="hairlab", dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        yield f"postgresql://hairlab@127.0.0.1:{port}/mlflow"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _state(url: str) -> tuple[int, list[str]]:
    """(FINISHED children, RUNNING children with train/loss) of experiment 'team'."""
    client = fk.client(url)
    runs = fk.all_runs(url, "team")
    done = [r for r in fk.children(runs) if r.info.status == "FINISHED"]
    busy = [r.info.run_id for r in fk.children(runs) if r.info.status == "RUNNING"
            and client.get_metric_history(r.info.run_id, "train/loss")]
    return len(done), busy


def test_killed_sweep_resumes_on_a_postgresql_server(postgres: str, tmp_path: Path, workdir: Path,
                                                    reap: list[fk.Hairlab]) -> None:
    with mlflow_server(tmp_path / "server", backend=postgres) as url:
        # one code version for both commands, even if the checkout gets a commit in between
        env = fk.child_env(MLFLOW_TRACKING_URI=url, HAIRLAB_CODE_VERSION="postgres-fault-test")
        first = fk.start(SWEEP, workdir, env=env, name="first")
        reap.append(first)

        def two_done_one_training() -> list[str]:
            if not first.running():
                raise AssertionError(f"the sweep ended before it could be killed:\n{first.output()[-3000:]}")
            done, busy = _state(url)
            return busy if done >= 2 and busy else []

        busy = fk.wait_for(two_done_one_training, 300, "2 FINISHED jobs and a long one training", interval=0.5)
        first.signal(signal.SIGKILL)  # the OOM killer / a node failure: nothing gets to clean up
        first.wait(30)
        first.wait_group_gone(60)
        before = fk.all_runs(url, "team")
        assert any(r.info.status == "RUNNING" for r in before), "a SIGKILLed sweep leaves RUNNING runs to reconcile"
        for run_id in busy:
            fk.assert_metric_logged(url, run_id, "train/loss")  # what was logged before the kill is kept
        finished_before = {r.info.run_id for r in fk.children(before) if r.info.status == "FINISHED"}

        second = fk.start([*SWEEP, "tracking.resume=true"], workdir, env=env, name="second")
        reap.append(second)
        code = second.wait(600)
        assert code == 0, second.output()[-4000:]
        second.wait_group_gone(60)

        runs = fk.all_runs(url, "team")
        fk.assert_none_running(runs)
        fk.assert_children_under_own_parent(runs)
        fk.assert_one_finished_per_key(runs, keys=4)
        first_parent, second_parent = sorted(fk.parents(runs), key=lambda r: r.info.start_time)
        retrained = fk.children(runs, second_parent)
        assert len(retrained) == 2, f"the resumed sweep trains only the 2 unfinished jobs:\n{fk.describe(runs)}"
        assert all(r.info.status == "FINISHED" for r in retrained), fk.describe(runs)
        # the jobs that had finished were skipped and their runs reused, not trained again
        reused = set(second_parent.data.tags.get("hairlab.reused_runs", "").split(","))
        assert reused == finished_before, (reused, finished_before)
        counts = re.search(r"(\d+) trained, (\d+) resumed, (\d+) skipped", second.output())
        assert counts, second.output()[-2000:]
        trained, resumed, skipped = map(int, counts.groups())
        assert (trained + resumed, skipped) == (2, 2), counts.group(0)
        # the killed runs were closed, and say why
        killed = [r for r in runs if r.info.run_id in busy]
        assert killed and all(r.info.status == "KILLED" and r.data.tags.get("hairlab.reconciled") for r in killed), \
            fk.describe(killed)
        assert first_parent.info.status in ("KILLED", "FAILED"), fk.describe([first_parent])
    # and it all lives in PostgreSQL itself
    import psycopg

    with psycopg.connect(postgres) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    assert statuses.get("RUNNING", 0) == 0 and sum(statuses.values()) == len(runs), statuses
