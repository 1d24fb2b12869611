"""Sweeps through the real CLI, real Hydra (basic and joblib launchers) and a real MLflow
SQLite store: one parent run per multirun, one child per job, failures recorded.

The jobs are :func:`toy_job` (``task=test_tracking_sweep:toy_job``), a job function that
logs engine-shaped metrics without training, so these tests exercise tracking alone; the
training engine has its own tests.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

TESTS = Path(__file__).resolve().parent
TOY = "task=test_tracking_sweep:toy_job"
METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "throughput/img_s", "time/epoch_s",
           "model/params")


def toy_job(cfg: Any, tracker: Any) -> float:
    """Log like the engine: per-step train metrics, per-epoch eval; ``+toy.mode=fail|diverge``."""
    from hairlab.errors import TrainingDiverged

    toy = cfg.get("toy") or {}
    steps, lr, mode = int(toy.get("steps", 6)), float(cfg.optimizer.lr), str(toy.get("mode", "ok"))
    tracker.log_metrics({"model/params": 1234.0}, step=0)
    loss = 2.3
    for step in range(1, steps + 1):
        loss = 2.3 * math.exp(-lr * step)
        tracker.log_metrics({"train/loss": loss, "train/acc": 1 - loss / 2.3, "lr": lr,
                             "throughput/img_s": 1000.0 + step}, step=step)
        if mode == "fail" and step == 2:
            raise ValueError("toy failure at step 2")
        if mode == "diverge" and step == 3:
            raise TrainingDiverged(step, loss)
        if mode == "hang" and step == 2:
            Path(str(toy.marker)).touch()
            time.sleep(120)
        if step % 3 == 0:  # +toy.split=test: no validation split, the evaluation is the test split's
            split = str(toy.get("split", "val"))
            tracker.log_metrics({f"{split}/loss": loss * 1.1, f"{split}/acc": 1 - loss / 2.5, "time/epoch_s": 0.5},
                                step=step)
    if toy.get("split") == "test":
        tracker.set_tags({"hairlab.selection_metric": "test/acc"})
    from hairlab.training.progress import sweep_position

    tracker.set_tags({"data.checksum": "toy", "toy.position": sweep_position() or "none"})
    return loss


def hairlab(args: list[str], cwd: Path, **env: str) -> Any:
    full = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **env}
    return run_cli(["run", *args], cwd=cwd, env=full, timeout=300)


def client(cwd: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")


def runs_of(cwd: Path, experiment: str) -> tuple[Any, list[Any]]:
    """(parent, children) of the single sweep in ``experiment``."""
    c = client(cwd)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} missing"
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("hairlab.sweep_parent") == "true"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1, "every run of the sweep is a child of its parent"
    return parents[0], children


@pytest.mark.slow
def test_sweep_parent_children_failure_and_divergence(tmp_path: Path) -> None:
    res = hairlab(["-m", TOY, "tracking.experiment=sweep1", "optimizer.lr=0.1,0.5",
                   "+toy.mode=ok,fail,diverge", "hydra.job.chdir=true"], tmp_path)
    # failures are recorded, the other jobs still run, the command reports and exits non-zero
    assert res.returncode == 1, res.stderr[-3000:]
    assert "2 diverged, 2 failed, 2 finished" in res.stdout
    assert "ValueError: toy failure at step 2" in res.stdout

    parent, children = runs_of(tmp_path, "sweep1")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["hairlab.swept_keys"] == "optimizer.lr,toy.mode"
    assert parent.data.metrics["sweep/jobs"] == 6 and parent.data.metrics["sweep/failed"] == 4
    names = sorted(r.info.run_name for r in children)
    modes = ("ok", "fail", "diverge")
    assert names == sorted(f"optimizer.lr={lr},+toy.mode={m}" for lr in (0.1, 0.5) for m in modes)
    c = client(tmp_path)
    for run in children:
        tags, params = run.data.tags, run.data.params
        mode = run.info.run_name.rsplit("=", 1)[1]
        assert run.info.status == ("FAILED" if mode == "fail" else "FINISHED")
        assert tags["hairlab.version"] and tags["hairlab.plugin.hairlab"]
        assert tags["hairlab.sweep_id"] == parent.data.tags["hairlab.sweep_id"]
        assert tags["hairlab.job_num"] in {str(i) for i in range(6)}
        assert tags["hairlab.overrides"].startswith("task=")
        assert params["optimizer.lr"] in ("0.1", "0.5") and params["optimizer.name"] == "adam"
        assert params["task"] == "test_tracking_sweep:toy_job" and "hydra.job.name" not in params
        arts = {a.path for a in c.list_artifacts(run.info.run_id)}
        assert {"hydra", "logs", "resolved_config.yaml"} <= arts
        hydra = {a.path for a in c.list_artifacts(run.info.run_id, "hydra")}
        assert hydra == {"hydra/config.yaml", "hydra/hydra.yaml", "hydra/overrides.yaml"}
        if mode == "ok":
            assert set(METRICS) <= set(run.data.metrics), run.data.metrics
            assert tags["data.checksum"] == "toy" and "hairlab.error" not in tags
            steps = [m.step for m in c.get_metric_history(run.info.run_id, "train/loss")]
            assert steps == [1, 2, 3, 4, 5, 6]
            plots = {a.path for a in c.list_artifacts(run.info.run_id, "plots")}
            assert plots == {"plots/loss.png", "plots/acc.png", "plots/lr.png"}
        elif mode == "fail":
            assert tags["hairlab.error"] == "ValueError: toy failure at step 2"
            assert "val/acc" not in run.data.metrics and "error.txt" in arts
            text = Path(c.download_artifacts(run.info.run_id, "error.txt", str(tmp_path / "dl"))).read_text()
            assert "Traceback" in text and "toy failure" in text
        else:
            assert tags["diverged"] == "true" and tags["diverged_step"] == "3"
            assert tags["hairlab.error"].startswith("TrainingDiverged")
    summary = {a.path for a in c.list_artifacts(parent.info.run_id, "summary")}
    assert summary == {"summary/summary.md", "summary/summary.csv", "summary/summary.json"}
    curves = {a.path for a in c.list_artifacts(parent.info.run_id, "curves")}
    assert curves == {f"curves/{m}.png" for m in ("train_loss", "val_loss", "train_acc", "val_acc")}
    md = c.download_artifacts(parent.info.run_id, "summary/summary.md", str(tmp_path / "dl"))
    text = Path(md).read_text()
    assert [text.count(f"| {s} |") for s in ("FAILED", "FINISHED", "DIVERGED@3")] == [2, 2, 2]


@pytest.mark.slow
def test_parallel_joblib_sweep_loses_nothing(tmp_path: Path) -> None:
    """Two loky workers writing to the default SQLite store at once: every metric arrives."""
    res = hairlab(["-m", TOY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracking.experiment=par",
                   "tracking.flush_interval_s=0.05", "+toy.steps=60", "optimizer.lr=0.01,0.02,0.03,0.04"],
                  tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    parent, children = runs_of(tmp_path, "par")
    assert parent.info.status == "FINISHED" and len(children) == 4
    c = client(tmp_path)
    for run in children:
        assert run.info.status == "FINISHED"
        assert set(METRICS) <= set(run.data.metrics)
        for key, count in (("train/loss", 60), ("lr", 60), ("val/acc", 20)):
            history = c.get_metric_history(run.info.run_id, key)
            assert len(history) == count, (run.info.run_name, key, len(history))
        assert c.list_artifacts(run.info.run_id, "logs"), "the job log is uploaded"
    assert len({r.data.tags["hairlab.job_dir"] for r in children}) == 4


@pytest.mark.parametrize("split", ["val", "test"])
def test_sweep_end_shows_its_jobs_the_best_and_where(tmp_path: Path, split: str) -> None:
    """The end of a sweep: a table of its jobs, the best one by the jobs' selection metric, and the
    MLflow UI path of the parent; each job knew its position (job N/3)."""
    res = hairlab(["-m", TOY, "tracking.experiment=ends", "optimizer.lr=0.1,0.5,0.3", f"+toy.split={split}"],
                  tmp_path, COLUMNS="100")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    parent, children = runs_of(tmp_path, "ends")
    metric = "val/acc" if split == "val" else "test/acc"
    best = max(children, key=lambda r: r.data.metrics[metric])
    assert best.data.params["optimizer.lr"] == "0.5"
    assert parent.data.tags["hairlab.best_metric"] == metric
    assert parent.data.tags["hairlab.best_run"] == best.info.run_id
    assert parent.data.metrics["sweep/best_acc"] == pytest.approx(best.data.metrics[metric])
    assert "sweep/best_val_acc" not in parent.data.metrics
    assert sorted(r.data.tags["toy.position"] for r in children) == ["job 1/3", "job 2/3", "job 3/3"]
    out = res.stdout
    table = [line for line in out.splitlines() if line.startswith("│")]
    assert len(table) == 3 and all("FINISHED" in line for line in table), out
    assert max(len(line) for line in out.splitlines() if line[:1] in "┏┃┡│└") <= 100, out
    assert f"best by {metric}: optimizer.lr=0.5" in out
    exp_id = parent.info.experiment_id
    assert f"#/experiments/{exp_id}/runs/{parent.info.run_id}" in out and "`hairlab ui`" in out, out
    if split == "test":
        c = client(tmp_path)
        curves = {a.path for a in c.list_artifacts(parent.info.run_id, "curves")}
        assert "curves/test_acc.png" in curves and "curves/val_acc.png" not in curves


def test_single_run_failure_is_recorded_without_parent(tmp_path: Path) -> None:
    bad = hairlab([TOY, "tracking.experiment=single", "+toy.mode=fail"], tmp_path)
    assert bad.returncode != 0
    assert "toy failure at step 2" in bad.stderr
    c = client(tmp_path)
    (run,) = c.search_runs([c.get_experiment_by_name("single").experiment_id])
    assert run.info.run_name == "task=test_tracking_sweep:toy_job,tracking.experiment=single,+toy.mode=fail"
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.info.status == "FAILED" and run.data.tags["hairlab.error"].startswith("ValueError")
    # the end of a run says where it is (here FAILED, before the error line)
    page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"[hairlab] run {run.info.run_id} in experiment 'single': `hairlab ui`, then" in bad.stdout
    assert f"http://localhost:5000/{page} (FAILED)" in bad.stdout, bad.stdout


def test_local_backend_writes_no_mlflow_store(tmp_path: Path) -> None:
    res = hairlab(["-m", TOY, "tracking=local", "optimizer.lr=0.1,0.2"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()
    jobs = sorted(tmp_path.glob("multirun/*/*/*/metrics.jsonl"))
    assert len(jobs) == 2 and all(p.read_text().count("train/loss") == 6 for p in jobs)


def test_unreachable_server_stops_the_sweep_before_jobs(tmp_path: Path) -> None:
    res = hairlab(["-m", TOY, "tracking.uri=http://127.0.0.1:9", "optimizer.lr=0.1,0.2"], tmp_path)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "cannot set up MLflow tracking for this sweep" in res.stderr
    assert "not reachable" in res.stderr
    assert not list(tmp_path.glob("multirun/*/*/*/.hydra")), "no job starts when the store is unreachable"


@pytest.mark.slow
def test_ctrl_c_marks_the_running_job_and_the_sweep_killed(tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hairlab", "run", "-m", TOY, "tracking.experiment=killed", "+toy.mode=hang",
         f"+toy.marker={marker}", "optimizer.lr=0.1,0.2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), proc.communicate(timeout=5)[0].decode()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out[-2000:]
    c = client(tmp_path)
    runs = c.search_runs([c.get_experiment_by_name("killed").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("hairlab.sweep_parent") == "true"]
    children = [r for r in runs if r is not parent]
    assert [r.info.status for r in children] == ["KILLED"], "the second job never started"
    assert parent.info.status == "KILLED"
    assert len(c.get_metric_history(children[0].info.run_id, "train/loss")) == 2, "logged values survive"


ENGINE_METRICS = ("train/loss", "train/acc", "test/loss", "test/acc", "lr", "throughput/img_s", "time/epoch_s")


@pytest.mark.slow
def test_engine_sweep_in_parallel_logs_every_metric(tmp_path: Path) -> None:
    """The real training engine, two joblib workers, the default SQLite store."""
    res = hairlab(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracking.experiment=engine",
                   "dataset=synthetic", "dataset.train_size=64", "dataset.test_size=32", "trainer.epochs=2",
                   "trainer.batch_size=32", "trainer.progress=false", "optimizer=adam,sgd"], tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    parent, children = runs_of(tmp_path, "engine")
    assert sorted(r.info.run_name for r in children) == ["optimizer=adam", "optimizer=sgd"]
    c = client(tmp_path)
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["data.train_examples"] == "64"  # data facts are tags: params are config only
        assert not any(k.startswith("data.") for k in run.data.params)
        assert run.data.metrics["model/params"] > 1000
        assert "hw/paper2012/latency_s" in run.data.metrics
        for key in ENGINE_METRICS:
            steps = [m.step for m in c.get_metric_history(run.info.run_id, key)]
            assert steps == [2, 4], (run.info.run_name, key, steps)
    curves = {a.path for a in c.list_artifacts(parent.info.run_id, "curves")}
    assert "curves/test_acc.png" in curves and "curves/val_acc.png" not in curves  # no val split: test
