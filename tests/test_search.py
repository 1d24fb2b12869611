"""Optimising sweeps (issue 13): the objective, what a job returns, Optuna studies through
``hairlab run``, the Pareto front (unit and through ``hairlab compare --pareto``), and the
front logged at a sweep's end. Real Hydra, the real Optuna sweeper, real SQLite MLflow stores;
synthetic data, a few optimizer steps per trial."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hairlab.cli import app
from hairlab.errors import HairlabError
from hairlab.search import objective
from hairlab.search.objective import Objective
from hairlab.search.pareto import front

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs hairlab[search]")

#: A tiny training per trial (synthetic data, two optimizer steps, no artifacts).
TINY = ["dataset=synthetic", "dataset.train_size=32", "dataset.val_size=16", "dataset.test_size=16",
        "trainer.max_steps=2", "trainer.eval_every=null", "trainer.batch_size=16", "trainer.progress=false",
        "trainer.checkpoint=false", "trainer.early_stop=null", "tracking.log_artifacts=false", "tracking.plots=false"]
OPTUNA = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
          "hydra.sweeper.sampler.seed=0"]


# -- the Pareto front of a hand-made set ---------------------------------------------------------
ACC_LAT = ["val/acc:max", "hw/t/latency_s:min"]
HAND = [  # (val/acc, latency): expected on the front?
    (0.90, 3.0, True),    # most accurate
    (0.80, 1.0, True),    # tie with the next: equal points both stay
    (0.80, 1.0, True),
    (0.70, 1.0, False),   # dominated by (0.80, 1.0)
    (0.85, 3.0, False),   # dominated by (0.90, 3.0)
    (0.50, 0.5, True),    # fastest
    (0.50, 0.7, False),   # dominated by (0.50, 0.5): equal accuracy, slower
    (math.nan, 0.1, False),  # NaN accuracy: never on the front, though fastest
    (0.99, math.nan, False),  # NaN latency: never on the front, though most accurate
    (0.95, math.inf, False),  # infinite: not a usable value either
]


def _rows(points: list[tuple[float, float, bool]]) -> list[dict[str, float]]:
    return [{"val/acc": a, "hw/t/latency_s": lat} for a, lat, _ in points]


def test_front_picks_exactly_the_non_dominated_rows() -> None:
    assert front(_rows(HAND), ACC_LAT) == [i for i, p in enumerate(HAND) if p[2]]


def test_front_missing_metric_and_direction() -> None:
    rows = [{"val/acc": 0.5}, {"val/acc": 0.4, "hw/t/latency_s": 2.0}, {"val/acc": 0.3, "hw/t/latency_s": 1.0}]
    assert front(rows, ACC_LAT) == [1, 2]  # a row without a metric is left out
    # maximising latency too: the slow accurate run dominates the fast one
    assert front(rows, [Objective("val/acc", "maximize"), Objective("hw/t/latency_s", "maximize")]) == [1]
    assert front([{"val/acc": 0.1}, {"val/acc": 0.3}, {"val/acc": 0.3}], ["val/acc:max"]) == [1, 2]


def test_front_of_the_selection_metric_reads_each_rows_own() -> None:
    rows = [{"selection_metric": "test/acc", "test/acc": 0.9, "lat": 1.0},
            {"selection_metric": "val/acc", "val/acc": 0.5, "test/acc": 0.99, "lat": 1.0}]
    assert front(rows, [Objective(None, "maximize"), Objective("lat", "minimize")]) == [0]


# -- the objective config key ----------------------------------------------------------------------
@pytest.mark.parametrize("node, expected", [
    (None, []),
    ("val/acc", [Objective("val/acc", "maximize")]),
    ("val/loss", [Objective("val/loss", "minimize")]),
    ({"metric": "val/acc", "direction": "maximize"}, [Objective("val/acc", "maximize")]),
    ({"metric": None}, [Objective(None, "maximize")]),
    ("selection:max", [Objective(None, "maximize")]),
    (["val/acc:max", "hw/paper2012/latency_s:minimize"],
     [Objective("val/acc", "maximize"), Objective("hw/paper2012/latency_s", "minimize")]),
])
def test_objective_forms(node: Any, expected: list[Objective]) -> None:
    assert objective.parse(node) == expected


@pytest.mark.parametrize("node, message", [
    ("val/acc:up", "objective.direction='up' (metric val/acc): expected maximize or minimize"),
    ({"metric": "val/acc", "way": "max"}, "objective.way is not an objective option"),
    (["val/acc:max", "val/acc:min"], "objective names a metric twice"),
    ({"metric": 3}, "objective.metric=3: expected a metric name"),
    ("val acc", "objective.metric='val acc': not a metric name"),
])
def test_bad_objective_is_one_line(node: Any, message: str) -> None:
    with pytest.raises(HairlabError) as err:
        objective.parse(node)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_job_return() -> None:
    acc, lat = Objective("val/acc", "maximize"), Objective("hw/t/latency_s", "minimize")
    result = {"status": "finished", "val/acc": 0.5, "hw/t/latency_s": 0.25, "selection_metric": "val/acc"}
    assert objective.job_return([], result, optuna=True) is result  # no objective: the result dict
    assert objective.job_return([acc], result, optuna=True) == 0.5
    assert objective.job_return([Objective(None, "maximize"), lat], result, optuna=True) == [0.5, 0.25]
    # failed (None from the runner), diverged, or a metric the job did not log: a failed trial
    for bad in (None, {**result, "status": "diverged"}, {"status": "skipped", "val/acc": 0.5, "diverged_step": "3"},
                {"status": "finished"}):
        assert objective.job_return([acc, lat], bad, optuna=True) is None  # the Optuna sweeper's FAIL
        nans = objective.job_return([acc, lat], bad, optuna=False)
        assert len(nans) == 2 and all(math.isnan(v) for v in nans)  # any other sweeper: NaNs
    assert math.isnan(objective.job_return([acc], None, optuna=False))


def test_installed_optuna_sweeper_records_none_as_a_failed_trial_and_crashes_on_nan() -> None:
    """Why a failed job returns None under Optuna: the installed sweeper fails the trial on a
    non-float but, without hydra PR #3451, crashes the study on NaN (checked here, so the day a
    fixed release is installed this test says the workaround can go)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize"])
    trial = study.ask()
    with pytest.raises(ValueError):  # what the sweeper's first tell does with NaN
        study.tell(trial, state=optuna.trial.TrialState.COMPLETE, values=[math.nan])
    with pytest.raises(ValueError, match="Values were told"):  # its retry as FAIL keeps the NaN: the crash
        study.tell(trial, state=optuna.trial.TrialState.FAIL, values=[math.nan])
    study.tell(trial, state=optuna.trial.TrialState.FAIL, values=None)  # what None leads to: a failed trial
    assert study.trials[0].state == optuna.trial.TrialState.FAIL


# -- Optuna studies through `hairlab run` ---------------------------------------------------------
def hairlab_run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """``hairlab run ARGS`` in this process; its exit status."""
    from hydra.core.global_hydra import GlobalHydra

    from hairlab import hydra_app
    from hairlab.runner import task_function

    monkeypatch.chdir(cwd)
    GlobalHydra.instance().clear()
    try:
        hydra_app.run(args, task_function)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        GlobalHydra.instance().clear()
    return 0


def _store(tmp_path: Path) -> Any:
    from hairlab.tracking import store

    return store.client(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _runs(client: Any, name: str) -> tuple[Any, list[Any]]:
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("hairlab.sweep_parent") == "true"]
    assert len(parents) == 1
    return parents[0], [r for r in runs if r not in parents]


def _results(tmp_path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    found = list((tmp_path / "multirun").rglob("optimization_results.yaml"))
    assert len(found) == 1, "the study did not complete (the sweeper writes its results at the end)"
    return OmegaConf.to_container(OmegaConf.load(found[0]))  # type: ignore[return-value]


def test_single_objective_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No objective configured: each trial returns its selection metric (val/acc with a val split)."""
    code = hairlab_run(["-m", *OPTUNA, "hydra.sweeper.direction=maximize", "optimizer.lr=interval(1e-4,1e-2)",
                        "tracking.experiment=single", "hydra.sweep.dir=multirun/x", *TINY], tmp_path, monkeypatch)
    assert code == 0
    _, trials = _runs(_store(tmp_path), "single")
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
    accs = [r.data.metrics["val/acc"] for r in trials]
    results = _results(tmp_path)
    assert results["best_value"] == pytest.approx(max(accs))  # what the trials returned is what they logged


def test_multi_objective_study_logs_and_tags_the_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``+experiment=hw_search`` itself, shrunk: two objectives, the front tagged on the trials and
    logged on the parent."""
    code = hairlab_run(["+experiment=hw_search", "hydra.sweeper.n_trials=3", "hydra.sweep.dir=multirun/x",
                        *TINY], tmp_path, monkeypatch)
    assert code == 0
    client = _store(tmp_path)
    parent, trials = _runs(client, "hw_search")
    assert len(trials) == 3
    for run in trials:
        assert run.info.status == "FINISHED"
        assert {"val/acc", "hw/paper2012/latency_s"} <= set(run.data.metrics)
        assert run.data.params["hardware.mode"] == "corrected"  # the honest default
        assert run.data.tags["hairlab.pareto"] in ("true", "false")
    rows = [{**r.data.metrics} for r in trials]
    expected = {trials[i].info.run_id for i in front(rows, ["val/acc:max", "hw/paper2012/latency_s:min"])}
    assert {r.info.run_id for r in trials if r.data.tags["hairlab.pareto"] == "true"} == expected
    assert set(parent.data.tags["hairlab.pareto_front"].split(",")) == expected
    assert parent.data.metrics["sweep/pareto_size"] == len(expected)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "pareto")} >= {
        "pareto/front.md", "pareto/front.csv", "pareto/front.json", "pareto/pareto.png"}
    solutions = _results(tmp_path)["solutions"]  # Optuna's own front agrees with hairlab's
    assert sorted(tuple(s["values"]) for s in solutions) == sorted(
        (pytest.approx(r["val/acc"]), pytest.approx(r["hw/paper2012/latency_s"]))
        for r, run in zip(rows, trials, strict=True) if run.info.run_id in expected)


def flaky_job(cfg: Any, tracker: Any) -> dict[str, Any]:
    """A job (``task=test_search:flaky_job``) that fails for seed 1 and scores seed/10 otherwise."""
    if int(cfg.seed) == 1:
        raise RuntimeError("boom (on purpose)")
    tracker.log_metrics({"val/acc": cfg.seed / 10}, step=1)
    return {"status": "finished", "val/acc": cfg.seed / 10}


def test_failed_trial_does_not_crash_the_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = hairlab_run(["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=3",
                        "hydra.sweeper.direction=maximize", "objective=val/acc:max", "seed=choice(0,1,2)",
                        "task=test_search:flaky_job", "tracking.experiment=flaky", "hydra.sweep.dir=multirun/x"],
                       tmp_path, monkeypatch)
    assert code == 1  # the sweep reports its failed job...
    results = _results(tmp_path)  # ...after the study ran every trial and wrote its results
    assert results["best_value"] == pytest.approx(0.2) and results["best_params"] == {"seed": 2}
    _, runs = _runs(_store(tmp_path), "flaky")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]


def test_bad_objective_refused_before_any_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = hairlab_run(["-m", *OPTUNA, "hydra.sweeper.direction=[maximize,minimize]", "objective=val/acc:max",
                        "optimizer.lr=interval(1e-4,1e-2)", "tracking.experiment=bad", *TINY], tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and "the sweeper optimises 2 value(s)" in err, err
    code = hairlab_run(["-m", *OPTUNA, "hydra.sweeper.direction=[maximize,minimize]",
                        "objective=[val/acc:max,hw/host9/latency_s:min]", "optimizer.lr=interval(1e-4,1e-2)",
                        "tracking.experiment=bad", *TINY], tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and "objective metric 'hw/host9/latency_s': the runs log no hw/host9/*" in err, err
    db = tmp_path / "mlflow.db"
    if db.exists():
        assert _store(tmp_path).get_experiment_by_name("bad") is None


# -- compare --pareto on a hand-made store ---------------------------------------------------------
@pytest.fixture(scope="module")
def pareto_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hairlab.tracking import store

    uri = f"sqlite:///{tmp_path_factory.mktemp('pareto') / 'mlflow.db'}"
    client = store.client(uri)
    exp = store.ensure_experiment(client, "grid", uri)
    for i, (acc, lat, _) in enumerate(HAND):
        run = client.create_run(exp, run_name=f"run{i}", tags={"hairlab.selection_metric": "val/acc"})
        client.log_param(run.info.run_id, "model.width_multiplier", str(i))
        if not math.isnan(acc) and not math.isinf(acc):
            client.log_metric(run.info.run_id, "val/acc", acc)
        if math.isfinite(lat):  # MLflow stores inf as the largest float: a NaN or inf is a metric never logged
            client.log_metric(run.info.run_id, "hw/t/latency_s", lat)
        client.set_terminated(run.info.run_id)
    failed = client.create_run(exp, run_name="failed")  # the best of all, but FAILED: never on the front
    client.log_param(failed.info.run_id, "model.width_multiplier", "failed")
    client.log_metric(failed.info.run_id, "val/acc", 1.0)
    client.log_metric(failed.info.run_id, "hw/t/latency_s", 0.01)
    client.set_terminated(failed.info.run_id, status="FAILED")
    ref = client.create_run(store.ensure_experiment(client, "elsewhere", uri), run_name="paper")
    client.log_metric(ref.info.run_id, "val/acc", 0.6)
    client.log_metric(ref.info.run_id, "hw/t/latency_s", 2.0)
    client.set_terminated(ref.info.run_id)
    return uri


def test_compare_pareto_picks_exactly_the_front(pareto_store: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["compare", "grid", "--tracking-uri", pareto_store, "--pareto", "val/acc:max",
                                   "hw/t/latency_s:min", "-f", "json"])
    assert res.exit_code == 0, res.output
    shown = sorted(r["model.width_multiplier"] for r in json.loads(res.output))
    assert shown == sorted(str(i) for i, p in enumerate(HAND) if p[2])


def test_compare_pareto_table_and_plot(pareto_store: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["compare", "grid", "--tracking-uri", pareto_store, "--pareto", "val/acc:max",
                                   "hw/t/latency_s:min", "--plot", str(tmp_path / "plots"), "--reference", "paper"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "Pareto front" in res.output and "4 of 11 runs" in res.output
    assert (tmp_path / "plots" / "pareto.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["--pareto", "val/acc:max"], "--pareto needs two or more"),
    (["--pareto", "val/acc:max", "hw/nope/latency_s:min"], "no run of 'grid' logged hw/nope/latency_s"),
    (["--pareto", "val/acc:best", "hw/t/latency_s:min"], "expected maximize or minimize"),
    (["--pareto", "val/acc:max", "hw/t/latency_s:min", "--plot", "p", "--reference", "nobody"],
     "--reference nobody: no run with that id or name"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_compare_pareto_bad_input_is_one_line(pareto_store: str, args: list[str], message: str,
                                              tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["compare", "grid", "--tracking-uri", pareto_store, *args], env={"COLUMNS": "200"})
    assert isinstance(res.exception, HairlabError), res.output
    assert message in str(res.exception) and "\n" not in str(res.exception)


def test_resumed_study_skips_finished_trials_with_their_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tracking.resume=true``: a seeded study asks for the same trials again; each is skipped
    (no new run) and returns the stored run's objective values, so the study still completes."""
    args = ["-m", *OPTUNA, "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=[maximize,minimize]",
            "objective=[val/acc:max,hw/paper2012/latency_s:min]", "model.width_multiplier=choice(0.25,0.5)",
            "tracking.resume=true", "tracking.experiment=resumed", *TINY]
    assert hairlab_run([*args, "hydra.sweep.dir=multirun/a"], tmp_path, monkeypatch) == 0
    assert hairlab_run([*args, "hydra.sweep.dir=multirun/b"], tmp_path, monkeypatch) == 0
    client = _store(tmp_path)
    exp = client.get_experiment_by_name("resumed")
    trials = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("hairlab.sweep_parent") != "true"]
    assert len(trials) == 2  # the second study trained nothing
    from omegaconf import OmegaConf

    first, second = (OmegaConf.load(next((tmp_path / "multirun" / d).rglob("optimization_results.yaml")))
                     for d in ("a", "b"))
    assert sorted(map(tuple, (s["values"] for s in second.solutions))) == \
        sorted(map(tuple, (s["values"] for s in first.solutions)))
