"""CI-sized smoke test of every experiment in conf/experiment/ (a glob, so none can slip in).

Each experiment file must make itself a tracked multirun named after itself, and every point
of its sweep must compose and build. Then each one really runs as ``hairlab run
+experiment=NAME`` (in-process) for one step per job on synthetic data, into a temporary MLflow
store: the compared axis (the first swept key) keeps all its values, the other keys their
first, so the run still produces a sweep of comparable runs (a parent, one child per job).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

#: Searches (an Optuna sweeper choosing its trials, not a grid) are run by tests/test_search.py.
EXPERIMENTS = sorted(p for p in (REPO / "conf" / "experiment").glob("*.yaml") if "/hydra/sweeper" not in p.read_text())
#: Swept keys that vary the budget or the repetition, not the setting being compared.
NOT_A_COMPARISON = {"seed", "trainer.epochs", "trainer.max_steps", "trainer.max_minutes"}
#: Small, fast stand-ins for the real data and schedule (one optimizer step per job).
SMOKE = ["dataset=synthetic", "dataset.train_size=16", "dataset.test_size=16", "trainer.max_steps=1",
         "trainer.batch_size=8", "trainer.progress=false", "trainer.checkpoint=false"]
QUIET_TRACKING = ["tracking.log_artifacts=false", "tracking.plots=false"]


def _raw(path: Path) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def _sweep(path: Path) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` of an experiment file, each value list split."""
    from omegaconf import OmegaConf

    params = OmegaConf.select(_raw(path), "hydra.sweeper.params") or {}
    return {str(k): [v.strip() for v in str(vals).split(",")] for k, vals in params.items()}


def _compose(name: str, overrides: list[str]) -> Any:
    from hairlab.hydra_app import compose

    return compose([f"+experiment={name}", *overrides])


def test_there_are_experiments() -> None:
    names = {p.stem for p in EXPERIMENTS}
    assert {"adam_vs_sgd", "bn_vs_nobn", "gap_vs_dense", "params"} <= names, names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_is_a_tracked_sweep(path: Path) -> None:
    from omegaconf import OmegaConf

    assert path.read_text().startswith("# @package _global_"), f"{path.name}: needs '# @package _global_'"
    raw = _raw(path)
    assert OmegaConf.select(raw, "hydra.mode") == "MULTIRUN", f"{path.name}: set hydra.mode: MULTIRUN"
    assert OmegaConf.select(raw, "tracking.experiment") == path.stem, \
        f"{path.name}: set tracking.experiment: {path.stem} (the MLflow experiment is named after the file)"
    sweep = _sweep(path)
    assert sweep, f"{path.name}: no hydra.sweeper.params"
    cfg = _compose(path.stem, [])
    compared = set(sweep) - NOT_A_COMPARISON
    if cfg.task == "train" and compared:
        assert len(sweep.get("seed", [])) >= 2, \
            f"{path.name} compares {sorted(compared)}: sweep seed over >= 2 values"


def test_cifar_fast_is_the_ablations_last_row() -> None:
    """The final recipe is what the ablation measured: at its 10 minutes, cifar_fast's job and
    cifar_ablation's last row train the same way (the same job key but for the experiment name)."""
    from hairlab.tracking.identity import result_params

    last = _sweep(REPO / "conf" / "experiment" / "cifar_ablation.yaml")["ablation"][-1]
    recipe = result_params(_compose("cifar_fast", ["trainer.max_minutes=10", "seed=0"]))
    row = result_params(_compose("cifar_ablation", [f"ablation={last}", "seed=0"]))
    differing = sorted(k for k in set(recipe) | set(row) if recipe.get(k) != row.get(k))
    assert not differing, {k: (recipe.get(k), row.get(k)) for k in differing}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_sweep_point_composes_and_builds(path: Path) -> None:
    """Each job of the full sweep resolves (interpolations included) and its model builds."""
    from omegaconf import OmegaConf

    from hairlab import contract
    from hairlab.models import build_model
    from hairlab.plugin_manager import get_host
    from hairlab.training.config import EngineConfig
    from hairlab.training.job import build_optimizer

    host = get_host()

    sweep = _sweep(path)
    if "seed" in sweep:  # seeds change no config but the seed itself
        sweep["seed"] = sweep["seed"][:1]
    built: dict[str, Any] = {}
    for values in itertools.product(*sweep.values()):
        overrides = [f"{k}={v}" for k, v in zip(sweep, values, strict=True)]
        cfg = _compose(path.stem, overrides)
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        contract.check_config(cfg, host)  # what every job of the sweep goes through before it starts
        key = str(plain["model"])
        if key not in built:
            classes = cfg.dataset.num_classes if cfg.get("dataset") else None
            built[key] = build_model(cfg.model, host, num_classes=classes)
        if cfg.task == "train":
            contract.settings(EngineConfig, plain["trainer"], where="trainer")
            build_optimizer(built[key], plain["optimizer"], host)


def _smoke_overrides(path: Path) -> tuple[list[str], int]:
    """CLI overrides that shrink the sweep and the jobs; the number of jobs they leave."""
    sweep = _sweep(path)
    first, *rest = sweep
    overrides = [f"{k}={sweep[k][0]}" for k in rest]
    cfg = _compose(path.stem, [])
    if cfg.task == "train":
        overrides += SMOKE
        if first == "trainer.max_steps":  # a sweep over budgets keeps its jobs, at 1, 2, ... steps
            overrides = [o for o in overrides if not o.startswith("trainer.max_steps=")]
            overrides.append("trainer.max_steps=" + ",".join(str(i + 1) for i in range(len(sweep[first]))))
        if cfg.trainer.eval_split == "val" or cfg.dataset.get("val_size"):
            overrides.append("dataset.val_size=8")
    return overrides, len(sweep[first])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for all the smoke sweeps (its schema migration is paid once)."""
    return f"sqlite:///{tmp_path_factory.mktemp('experiments') / 'mlflow.db'}"


def _hairlab_run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hairlab run ARGS`` in this process: the CLI's own path minus typer, so torch, MLflow
    and Hydra are imported once for all the experiments instead of once per subprocess."""
    from hydra.core.global_hydra import GlobalHydra

    from hairlab import hydra_app
    from hairlab.runner import task_function

    monkeypatch.chdir(cwd)
    GlobalHydra.instance().clear()
    try:
        hydra_app.run(args, task_function)
    except SystemExit as exc:  # Hydra and the sweep callback report failures this way
        assert not exc.code, f"hairlab run {' '.join(args)} exited with {exc.code}"
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_runs_as_a_sweep(path: Path, tmp_path: Path, store: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    overrides, jobs = _smoke_overrides(path)
    _hairlab_run([f"+experiment={path.stem}", *overrides, f"tracking.uri={store}", *QUIET_TRACKING],
                 tmp_path, monkeypatch)

    client = MlflowClient(store)
    exp = client.get_experiment_by_name(path.stem)
    assert exp is not None, "the MLflow experiment is named after the experiment file"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("hairlab.sweep_parent") == "true"]
    children = [r for r in runs if r.data.tags.get("hairlab.sweep_parent") != "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == jobs, [r.info.run_name for r in children]
    for run in children:
        assert run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
        assert run.info.status == "FINISHED", (run.info.run_name, run.data.tags.get("hairlab.error"))
        metrics = run.data.metrics
        assert metrics.get("model/params", 0) > 0
        # every run, trained or profiled, is also a point of the accuracy-against-latency view
        assert metrics.get("hw/paper2012/latency_s", 0) > 0, sorted(metrics)
        if "train/loss" in metrics:
            assert 0.0 <= metrics[run.data.tags["hairlab.selection_metric"]] <= 1.0
    assert len({r.info.run_name for r in children}) == jobs, "runs are named after their swept values"
