"""The MLflow tracker, config flattening and store helpers, in-process against a real SQLite
store (one database per module: MLflow's schema migration costs seconds)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hairlab.errors import HairlabError
from hairlab.tracking import store
from hairlab.tracking.context import run_name
from hairlab.tracking.params import config_params, flatten


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    uri = f"sqlite:///{path}"
    store.ensure_experiment(store.client(uri), "warmup", uri)  # creates the schema once
    return uri


def new_run(uri: str, experiment: str = "unit") -> tuple[Any, str]:
    client = store.client(uri)
    exp = store.ensure_experiment(client, experiment, uri)
    return client, client.create_run(exp, run_name="r").info.run_id


# -- params ------------------------------------------------------------------------------
def test_flatten_spells_values_like_overrides() -> None:
    tree = {"optimizer": {"name": "adam", "lr": 0.001, "eps": 1e-8, "decoupled": False},
            "seed": 0, "hw_targets": ["paper2012", "a"], "x": None, "empty": {},
            "model": {"stages": [{"block": "dw", "n": 2}, {"block": "pw", "n": 1}]},
            "bad key!": 1, "nan": float("nan")}
    flat = flatten(tree)
    assert flat == {
        "optimizer.name": "adam", "optimizer.lr": "0.001", "optimizer.eps": "1e-08",
        "optimizer.decoupled": "false", "seed": "0", "hw_targets": '["paper2012","a"]', "x": "null",
        "empty": "{}", "model.stages.0.block": "dw", "model.stages.0.n": "2", "model.stages.1.block": "pw",
        "model.stages.1.n": "1", "bad key_": "1", "nan": "nan",
    }
    assert len(flatten({"long": "x" * 10000})["long"]) == 6000


def test_config_params_resolves_and_drops_hydra() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": {"b": 2, "c": "${a.b}"}, "d": "${a.c}", "hydra": {"job": {"name": "x"}},
                            "broken": "${nope.missing}"})
    params = config_params(cfg)
    assert params["a.c"] == "2" and params["d"] == "2"
    assert params["broken"] == "${nope.missing}"
    assert not any(k.startswith("hydra") for k in params)


def test_run_name_prefers_swept_overrides() -> None:
    overrides = ["dataset=synthetic", "optimizer=sgd", "optimizer.lr=0.1", "hydra.launcher.n_jobs=2",
                 r"task=a\:b"]
    assert run_name(overrides, ["optimizer", "optimizer.lr"]) == "optimizer=sgd,optimizer.lr=0.1"
    assert run_name(overrides) == "dataset=synthetic,optimizer=sgd,optimizer.lr=0.1,task=a:b"
    assert run_name([], None, 3) == "job3" and run_name([]) == "run"


# -- store -------------------------------------------------------------------------------
def test_resolve_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert store.resolve_uri("sqlite:///sub/x.db", tmp_path) == f"sqlite:///{tmp_path / 'sub/x.db'}"
    assert store.resolve_uri("http://h:5000", tmp_path) == "http://h:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:1")
    assert store.resolve_uri(None, tmp_path) == "http://env:1"
    assert store.resolve_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    with pytest.raises(HairlabError, match="not a URI"):
        store.resolve_uri("mlruns", tmp_path)


def test_unreachable_server_is_one_line() -> None:
    with pytest.raises(HairlabError, match="not reachable"):
        store.check_server("http://127.0.0.1:9", timeout=2)


def test_concurrent_experiment_creation_yields_one_experiment(db: str) -> None:
    ids: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            ids.append(store.ensure_experiment(store.client(db), "race", db))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 1 and len(ids) == 6
    exp = store.client(db).get_experiment(ids[0])
    assert exp.artifact_location.endswith("/mlartifacts/race")


def test_deleted_experiment_names_the_fix(db: str) -> None:
    client = store.client(db)
    exp = store.ensure_experiment(client, "gone", db)
    client.delete_experiment(exp)
    with pytest.raises(HairlabError, match="restore it"):
        store.ensure_experiment(client, "gone", db)


# -- tracker -----------------------------------------------------------------------------
def test_tracker_batches_everything_and_closes(db: str, tmp_path: Path) -> None:
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    client, run_id = new_run(db)
    job = tmp_path / "job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("a: 1\n")
    (job / "hairlab.log").write_text("log line\n")
    tracker = MLflowTracker(client, run_id, flush_interval_s=60, job_dir=job)
    tracker.log_params({"optimizer.lr": 0.1, "flag": True})
    tracker.log_params({"optimizer.lr": 0.1})  # same value again: fine
    tracker.log_params({"optimizer.lr": 0.2})  # changed value: ignored with a warning, not an error
    for step in range(2500):  # more than one log_batch worth
        tracker.log_metrics({"train/loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    tracker.log_metrics({"val/acc": 0.5, "val/loss": 1.0}, step=2499)
    tracker.set_tags({"diverged": "false", "x": 3})
    tracker.close("FINISHED")
    tracker.close("FAILED")  # idempotent
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"optimizer.lr": "0.1", "flag": "true"}
    assert run.data.tags["x"] == "3"
    history = client.get_metric_history(run_id, "train/loss")
    assert len(history) == 2500 and sorted(h.step for h in history) == list(range(2500))
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert {"hydra", "logs", "plots"} <= arts
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {"plots/loss.png", "plots/acc.png",
                                                                        "plots/lr.png"}
    assert not tracker.errors


def test_tracker_flushes_in_the_background(db: str) -> None:
    import time

    from hairlab.tracking.mlflow_tracker import MLflowTracker

    client, run_id = new_run(db)
    tracker = MLflowTracker(client, run_id, flush_interval_s=0.05, plots=False)
    tracker.log_metrics({"train/loss": 1.0}, step=1)
    deadline = time.time() + 20
    while time.time() < deadline and "train/loss" not in client.get_run(run_id).data.metrics:
        time.sleep(0.05)
    assert client.get_run(run_id).data.metrics["train/loss"] == 1.0, "written before close"
    assert client.get_run(run_id).info.status == "RUNNING"
    tracker.close("KILLED")
    assert client.get_run(run_id).info.status == "KILLED"


def test_record_error_tags_and_keeps_traceback(db: str, tmp_path: Path) -> None:
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    client, run_id = new_run(db)
    tracker = MLflowTracker(client, run_id, job_dir=tmp_path, plots=False)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        tracker.record_error(exc)
    tracker.close("FAILED")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["hairlab.error"] == "RuntimeError: boom"
    text = Path(client.download_artifacts(run_id, "error.txt", str(tmp_path / "dl"))).read_text()
    assert "Traceback" in text and 'raise RuntimeError("boom")' in text


def test_tracker_survives_a_store_that_goes_away(tmp_path: Path) -> None:
    """A store that stops answering costs the metrics, never the training job."""
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    class Broken:
        def log_batch(self, *a: Any, **k: Any) -> None:
            raise RuntimeError("store is gone")

        def set_terminated(self, *a: Any, **k: Any) -> None:
            raise RuntimeError("store is gone")

    tracker = MLflowTracker(Broken(), "0" * 32, flush_interval_s=60, plots=False)
    tracker.log_metrics({"train/loss": 1.0}, step=1)
    tracker.close("FINISHED")
    assert tracker.errors and "store is gone" in tracker.errors[0]


def test_git_commit_tag_only_inside_a_checkout(tmp_path: Path) -> None:
    import subprocess

    from hairlab.tracking.context import base_tags, git_commit

    assert git_commit(tmp_path) is None and "hairlab.git_commit" not in base_tags(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run([*git, "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    tags = base_tags(tmp_path)
    assert tags["hairlab.git_commit"] == head == tags["mlflow.source.git.commit"]
    assert tags["hairlab.plugin.hairlab"] and tags["hairlab.version"]
