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


def _git_repo(path: Path) -> str:
    import subprocess

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-C", str(path)]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "f").write_text("x")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def test_git_tags_name_the_code_and_the_project(tmp_path: Path) -> None:
    """hairlab's own commit (with a dirty flag) always; the working directory's project when it is another repo."""
    from hairlab.tracking import environment
    from hairlab.tracking.context import base_tags

    code = environment.git_state(str(environment.SOURCE_DIR))
    outside = base_tags(tmp_path)
    assert "hairlab.project.git_commit" not in outside
    if code is not None:  # running from a checkout (not an installed wheel)
        assert outside["hairlab.git_commit"] == code.commit == outside["mlflow.source.git.commit"]
        assert outside["hairlab.git_dirty"] in ("true", "false")
        inside = base_tags(environment.SOURCE_DIR / "docs")  # the same repository: no second commit
        assert "hairlab.project.git_commit" not in inside
    project = tmp_path / "project"
    project.mkdir()
    head = _git_repo(project)
    tags = base_tags(project)
    assert tags["hairlab.project.git_commit"] == head == tags["mlflow.source.git.commit"]
    assert tags["hairlab.project.git_dirty"] == "false"
    (project / "f").write_text("changed")  # a tracked file differs from HEAD
    environment.git_state.cache_clear()
    assert base_tags(project)["hairlab.project.git_dirty"] == "true"
    assert tags["hairlab.plugin.hairlab"] and tags["hairlab.version"]


def test_environment_tags_name_python_torch_and_the_cpu() -> None:
    import platform

    import torch

    from hairlab.tracking.environment import environment_tags

    tags = environment_tags()
    assert tags["hairlab.env.python"] == platform.python_version()
    assert tags["hairlab.env.torch"] == torch.__version__
    assert tags["hairlab.env.torch_cuda"] == (torch.version.cuda or "none")
    assert tags["hairlab.env.cpu"] and tags["hairlab.env.cpu"] != "unknown"
    assert int(tags["hairlab.env.cpu_count"]) >= 1
    assert "hairlab.env.torch" not in environment_tags(with_torch=False)


# -- user tags -----------------------------------------------------------------------------
def test_user_tags_from_a_list_or_a_mapping() -> None:
    from omegaconf import OmegaConf

    from hairlab.tracking.context import user_tags

    assert user_tags(OmegaConf.create(["baseline", "owner:ana", "lr=hi", " spaced "])) == {
        "baseline": "true", "owner": "ana", "lr": "hi", "spaced": "true"}
    assert user_tags(OmegaConf.create({"owner": "ana", "round": 2})) == {"owner": "ana", "round": "2"}
    assert user_tags(None) == {} and user_tags([]) == {}
    for bad, match in (("baseline", "expected a list"), ([["a"]], "not a string"),
                       (["mlflow.runName:x"], "reserved"), ([":x"], "not a tag name")):
        with pytest.raises(HairlabError, match=match):
            user_tags(bad)


# -- data: facts, timings, inputs ------------------------------------------------------------
def test_data_facts_are_tags_and_timings_metrics() -> None:
    from hairlab.tracking.inputs import data_facts

    tags, metrics = data_facts({"name": "d", "cache_hit": True, "load_s": 1.25, "first_decode_s": 3.0,
                                "cache_file": "/c/x.pt", "mean": [0.1234567, 0.5], "source_sha256": "abc"})
    assert metrics == {"data/load_s": 1.25, "data/first_decode_s": 3.0}
    assert tags == {"data.name": "d", "data.cache_hit": "true", "data.cache_file": "/c/x.pt",
                    "data.mean": "[0.123457,0.5]", "data.source_sha256": "abc", "hairlab.data_checksum": "abc"}


def synthetic(**options: Any) -> Any:
    from hairlab_plugins.datasets.synthetic import build

    kw: dict[str, Any] = dict(num_classes=4, image_size=8, channels=3, root=None, train_size=None, test_size=None,
                              val_size=8, num_train=40, num_test=16, noise=8.0, seed=0, crop_padding=0,
                              hflip=False, normalize=True, mean=None, std=None)
    kw.update(options)
    return build(**kw)


def test_split_digest_is_cheap_and_follows_the_data() -> None:
    data = synthetic()
    assert data.digest("train") == synthetic().digest("train")  # same data: same digest
    assert len({data.digest(s) for s in ("train", "val", "test")}) == 3
    assert synthetic(train_size=16).digest("train") != data.digest("train")
    assert synthetic(train_size=16).digest("val") == data.digest("val")  # the val split did not change
    assert synthetic(seed=1).digest("test") != data.digest("test")
    data.note(load_s=9.9, cache_hit=False)  # facts of this load do not change the data
    assert data.digest("train") == synthetic().digest("train")


def test_tracker_logs_the_dataset_as_inputs_tags_and_metrics(db: str) -> None:
    import json

    from hairlab.tracking.mlflow_tracker import MLflowTracker

    client, run_id = new_run(db)
    data = synthetic()
    data.note(load_s=0.5, cache_hit=True)
    tracker = MLflowTracker(client, run_id, flush_interval_s=60, plots=False)
    tracker.log_params({"dataset.val_size": 8})
    tracker.log_dataset(data)
    tracker.close("FINISHED")
    run = client.get_run(run_id)
    assert run.data.params == {"dataset.val_size": "8"}  # params are config only
    assert run.data.tags["data.cache_hit"] == "true" and run.data.tags["data.train_examples"] == "32"
    assert run.data.metrics["data/load_s"] == 0.5
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "test"}
    for context, split, n in (("training", "train", 32), ("validation", "val", 8), ("test", "test", 16)):
        ds = inputs[context]
        assert ds.name == "synthetic" and ds.digest == data.digest(split)
        assert json.loads(ds.profile) == {"split": split, "num_examples": n, "num_classes": 4,
                                          "input_shape": [3, 8, 8]}
    assert not tracker.errors


def test_local_tracker_keeps_data_facts_out_of_params(tmp_path: Path) -> None:
    from hairlab.tracking.base import LocalTracker, read_metrics

    tracker = LocalTracker(tmp_path)
    data = synthetic()
    data.note(load_s=0.25)
    tracker.log_dataset(data)
    tracker.close()
    assert tracker.params == {} and tracker.tags["data.val_examples"] == "8"
    assert read_metrics(tmp_path)[0]["data/load_s"] == 0.25


# -- system metrics ------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_system_metrics_are_recorded_and_stop_with_the_run(db: str, status: str) -> None:
    import time

    from hairlab.tracking.factory import start_system_metrics
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    client, run_id = new_run(db)
    monitor = start_system_metrics(run_id, db, {"system_metrics": True, "system_metrics_interval_s": 0.05})
    assert monitor is not None
    thread = monitor._process
    tracker = MLflowTracker(client, run_id, flush_interval_s=60, plots=False, uri=db, system_metrics=monitor)
    deadline = time.time() + 30
    while time.time() < deadline and "system/cpu_utilization_percentage" not in client.get_run(run_id).data.metrics:
        time.sleep(0.05)
    metrics = client.get_run(run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    tracker.close(status)
    assert client.get_run(run_id).info.status == status
    assert not thread.is_alive() and tracker.system_metrics is None  # stopped, on every path
    assert start_system_metrics(run_id, db, {"system_metrics": False}) is None


# -- the model -----------------------------------------------------------------------------
def test_log_model_is_loadable_and_predicts_the_same(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import mlflow.pytorch
    import torch

    from hairlab.tracking.mlflow_tracker import MLflowTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client, run_id = new_run(db)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).train()
    example = torch.randn(2, 3, 8, 8)
    tracker = MLflowTracker(client, run_id, flush_interval_s=60, plots=False, uri=db)
    tracker.log_model(model, example)
    tracker.close("FINISHED")
    assert not tracker.errors and model.training  # the caller's model is left as it was
    assert "MLFLOW_TRACKING_URI" not in os.environ  # no global state left behind
    uri = client.get_run(run_id).data.tags["hairlab.model_uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    loaded = mlflow.pytorch.load_model(uri)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x))
    info = mlflow.models.get_model_info(uri)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 3, 8, 8]


def test_null_and_local_trackers_take_every_call(tmp_path: Path) -> None:
    from hairlab.tracking.base import LocalTracker, NullTracker, Tracker

    for tracker in (NullTracker(), LocalTracker(tmp_path)):
        assert isinstance(tracker, Tracker)
        tracker.log_model(object(), None)  # no-op: checkpoints are the local record
        tracker.log_dataset(synthetic())
        tracker.close()


def test_tags_and_run_name_do_not_change_the_job_key() -> None:
    from omegaconf import OmegaConf

    from hairlab.tracking.identity import job_key, result_params

    base = {"optimizer": {"lr": 0.1}, "tags": [], "tracking": {"run_name": None}}
    labelled = {"optimizer": {"lr": 0.1}, "tags": ["baseline", "owner:ana"], "tracking": {"run_name": "mine"},
                "objective": {"metrics": ["val/acc"]}}
    assert job_key(OmegaConf.create(base), "v") == job_key(OmegaConf.create(labelled), "v")
    assert "tags" not in config_params(OmegaConf.create(labelled))  # labels are tags, not params
    assert result_params(OmegaConf.create(base)) == {"optimizer.lr": "0.1"}
    assert job_key(OmegaConf.create({**base, "optimizer": {"lr": 0.2}}), "v") != job_key(OmegaConf.create(base), "v")


@pytest.mark.slow
def test_a_run_carries_the_user_tags_name_and_environment(tmp_path: Path) -> None:
    """Through `hairlab run`: tags=[...] and tracking.run_name reach the MLflow run; a bad tags value is
    refused before any run exists."""
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "hairlab", "run", "dataset=synthetic", "dataset.train_size=32",
            "dataset.test_size=16", "trainer.max_steps=2", "trainer.batch_size=16", "trainer.progress=false",
            "tags=[baseline,owner:ana]", "tracking.run_name=my-run", "tracking.system_metrics=false",
            "trainer.checkpoint=none"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    client = store.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_name == "my-run"
    assert run.data.tags["baseline"] == "true" and run.data.tags["owner"] == "ana"
    assert run.data.tags["hairlab.env.cpu"] and run.data.tags["hairlab.env.torch"]
    assert not any(k.startswith(("data.", "tags")) for k in run.data.params)
    assert run.data.tags["data.train_examples"] == "32" and "data/load_s" not in run.data.params
    assert {i.tags[0].value for i in run.inputs.dataset_inputs} == {"training", "test"}
    bad = subprocess.run([*args[:-4], "tags=[[nested]]"], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 2 and "tags:" in bad.stderr and "Traceback" not in bad.stderr
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 1


def test_a_run_whose_setup_fails_is_closed_failed(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the job's config cannot be written after the run exists, the run (and its monitor) end FAILED."""
    from omegaconf import OmegaConf

    from hairlab.tracking import factory
    from hairlab.tracking.context import JobContext

    client = store.client(db)
    where = factory.Location(db, client, store.ensure_experiment(client, "setup", db))
    ctx = JobContext(job_dir=tmp_path / "job", base_dir=tmp_path, overrides=[])

    def broken(cfg: Any, job_dir: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(factory, "_write_resolved_config", broken)
    settings = {"backend": "mlflow", "system_metrics": True, "plots": False, "log_artifacts": False}
    with pytest.raises(OSError, match="disk full"):
        factory.open_mlflow_run(OmegaConf.create({"task": "train"}), settings, ctx, where)
    (run,) = client.search_runs([where.experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["hairlab.error"] == "OSError: disk full"
