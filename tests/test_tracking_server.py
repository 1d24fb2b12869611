"""Server mode: a real ``mlflow server`` subprocess (SQLite backend, proxied artifact store),
a sweep logged to it over HTTP by parallel joblib workers, read back through the client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))

from mlflow_server import mlflow_server
from test_tracking_sweep import METRICS, TOY, hairlab


@pytest.mark.slow
def test_sweep_against_a_real_server(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    with mlflow_server(tmp_path / "server") as url:
        work = tmp_path / "work"
        work.mkdir()
        res = hairlab(["-m", TOY, f"tracking.uri={url}", "tracking.experiment=served",
                       "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=0.1,0.2,0.3"], work)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        assert not (work / "mlflow.db").exists(), "nothing went to the local default store"

        client = MlflowClient(url)
        exp = client.get_experiment_by_name("served")
        runs = client.search_runs([exp.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("hairlab.sweep_parent") == "true"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in children) == [f"optimizer.lr={v}" for v in (0.1, 0.2, 0.3)]
        assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/jobs"] == 3
        for run in children:
            assert run.info.status == "FINISHED"
            assert set(METRICS) <= set(run.data.metrics)
            assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 6
            # artifacts travel through the server's proxy into its artifact store
            assert run.info.artifact_uri.startswith("mlflow-artifacts:")
            assert {"hydra", "logs", "plots", "resolved_config.yaml"} <= {
                a.path for a in client.list_artifacts(run.info.run_id)}
        stored = list((tmp_path / "server" / "artifacts").rglob("summary.md"))
        assert len(stored) == 1, "the parent's summary is in the server's artifact store"

        # hairlab compare reads the server too
        from typer.testing import CliRunner

        from hairlab.cli import app

        args = ["compare", "served", "--tracking-uri", url, "-f", "csv", "--sort", "val/acc"]
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        assert len(lines) == 4 and lines[1].startswith("optimizer.lr=0.3,")


@pytest.mark.slow
def test_run_context_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dataset inputs, system metrics and the logged model reach a real server (artifacts through its
    proxy), and the model loads back from it."""
    import time

    import mlflow.pytorch
    import torch
    from test_tracking import synthetic

    from hairlab.tracking import store
    from hairlab.tracking.factory import start_system_metrics
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with mlflow_server(tmp_path / "server") as url:
        client = store.client(url)
        run_id = client.create_run(store.ensure_experiment(client, "context", url)).info.run_id
        monitor = start_system_metrics(run_id, url, {"system_metrics": True, "system_metrics_interval_s": 0.1})
        tracker = MLflowTracker(client, run_id, flush_interval_s=60, plots=False, uri=url, system_metrics=monitor)
        tracker.log_dataset(synthetic())
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 4))
        tracker.log_model(model, torch.randn(2, 3, 8, 8))
        deadline = time.time() + 30
        while time.time() < deadline and not any(k.startswith("system/") for k in client.get_run(run_id).data.metrics):
            time.sleep(0.1)
        tracker.close("FINISHED")
        assert not tracker.errors, tracker.errors
        run = client.get_run(run_id)
        assert {i.tags[0].value for i in run.inputs.dataset_inputs} == {"training", "validation", "test"}
        assert "system/cpu_utilization_percentage" in run.data.metrics
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        loaded = mlflow.pytorch.load_model(run.data.tags["hairlab.model_uri"])
        x = torch.randn(1, 3, 8, 8)
        with torch.no_grad():
            assert torch.allclose(loaded(x), model(x))
