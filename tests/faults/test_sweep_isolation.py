"""Two sweeps never mix: commands started together get their own directories and parents.

Two real ``hairlab run -m`` (and two single runs) started at the same instant in the same
directory, as a shell script's ``cmd & cmd &`` would: each sweep has its own sweep
directory (``${hairlab.unique:}`` in hydra.sweep.dir) and parent run, every child sits under
its own parent with its job directory inside its own sweep's directory (joblib workers
resolve the same directory as their launching process). A directory given by hand to two
commands at once is refused for the second in one line.
"""

from __future__ import annotations

import signal
from pathlib import Path

import faultkit as fk
import pytest

SHORT = [*fk.TINY, *fk.FAST_FLUSH]


def _both(workdir: Path, args: list[str], reap: list[fk.Hairlab]) -> list[tuple[int, str]]:
    jobs = [fk.start(args, workdir, name=f"cmd{i}") for i in range(2)]
    reap.extend(jobs)
    return [(job.wait(300), job.output()) for job in jobs]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_two_sweeps_started_together_never_mix(workdir: Path, reap: list[fk.Hairlab], launcher: list[str]) -> None:
    results = _both(workdir, ["-m", *SHORT, "optimizer.lr=0.001,0.002", *launcher], reap)
    for code, out in results:
        assert code == 0, out[-3000:]
    runs = fk.all_runs(fk.sqlite_uri(workdir))
    fk.assert_none_running(runs)
    fk.assert_children_under_own_parent(runs)
    parents = fk.parents(runs)
    assert len(parents) == 2, fk.describe(runs)
    dirs = {p.data.tags["hairlab.sweep_dir"] for p in parents}
    assert len(dirs) == 2, dirs
    for parent in parents:
        kids = fk.children(runs, parent)
        assert len(kids) == 2, fk.describe(runs)
        for kid in kids:  # the job's files (checkpoints, configs) live in its own sweep's directory
            assert Path(kid.data.tags["hairlab.job_dir"]).parent == Path(parent.data.tags["hairlab.sweep_dir"])
        assert len({k.data.tags["hairlab.job_dir"] for k in kids}) == 2


def test_two_single_runs_started_together_get_their_own_dirs(workdir: Path, reap: list[fk.Hairlab]) -> None:
    results = _both(workdir, SHORT, reap)
    for code, out in results:
        assert code == 0, out[-3000:]
    runs = fk.all_runs(fk.sqlite_uri(workdir))
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"], fk.describe(runs)
    assert len({r.data.tags["hairlab.job_dir"] for r in runs}) == 2


def test_one_sweep_dir_given_to_two_sweeps_refuses_the_second(workdir: Path, reap: list[fk.Hairlab]) -> None:
    args = ["-m", *fk.LONG, *fk.FAST_FLUSH, "optimizer.lr=0.001", "hydra.sweep.dir=multirun/mine"]
    jobs = [fk.start(args, workdir, name=f"cmd{i}") for i in range(2)]
    reap.extend(jobs)
    refused = fk.wait_for(lambda: [j for j in jobs if not j.running()], 180, "one sweep to be refused")
    assert len(refused) == 1, [j.output()[-2000:] for j in jobs]
    out = refused[0].output()
    assert refused[0].proc.returncode == 2, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("hairlab:")]
    assert len(errors) == 1 and "hydra.sweep.dir" in errors[0] and "in use" in errors[0], out[-3000:]
    survivor = next(j for j in jobs if j is not refused[0])
    fk.wait_running(workdir / "mlflow.db", survivor)
    survivor.signal(signal.SIGINT)
    assert survivor.wait(120) == 130
    runs = fk.all_runs(fk.sqlite_uri(workdir))
    fk.assert_none_running(runs)
    assert len(fk.parents(runs)) == 1, fk.describe(runs)  # the refused sweep created no parent
