"""Conventions a Hydra user expects: a `debug` group, and a place for one's own configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli


def composed(args: list[str], cwd: Path) -> dict:
    res = run_cli(["run", "--cfg", "all", *args], cwd=cwd)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def test_debug_fast_wins_over_an_experiment_and_loses_to_the_command_line(tmp_path: Path) -> None:
    cfg = composed(["debug=fast", "+experiment=cifar_fast"], tmp_path)  # debug= first: still applied last
    assert cfg["trainer"]["max_steps"] == 4 and cfg["trainer"]["checkpoint"] == "none"
    assert cfg["dataset"]["train_size"] == 256 and cfg["tracking"]["backend"] == "local"
    assert cfg["optimizer"]["name"] == "sgd", "the experiment's own choices stay"
    assert cfg["hydra"]["mode"] == "RUN" and cfg["hydra"]["run"]["dir"].startswith("outputs/debug/")
    cfg = composed(["debug=fast", "trainer.max_steps=9"], tmp_path)
    assert cfg["trainer"]["max_steps"] == 9


def test_debug_fast_runs_and_leaves_no_trace_in_the_store(tmp_path: Path) -> None:
    res = run_cli(["run", "debug=fast", "dataset=synthetic", "dataset.train_size=64", "trainer.threads=1",
                   "hw_targets=[]"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists(), "debug runs stay out of the MLflow store"
    (metrics,) = tmp_path.glob("outputs/debug/*/*/metrics.jsonl")
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if "train/loss" in line]
    assert max(steps) == 4, steps
    assert not (metrics.parent / "checkpoints").exists()
    assert "run files (tracking=local): " in res.stdout


@pytest.mark.parametrize("how", ["-cd", "searchpath"])
def test_a_user_config_dir_adds_experiments_and_presets(tmp_path: Path, how: str) -> None:
    """Your own configs live in your project (`-cd my_conf` or hydra.searchpath), never in the package."""
    conf = tmp_path / "my_conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "model").mkdir()
    (conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: tiny\n  - override /optimizer: sgd\n"
        "optimizer:\n  lr: 0.123\ntracking:\n  experiment: mine\n")
    (conf / "model" / "tiny.yaml").write_text(
        "defaults:\n  - schema/convnet@_here_\n  - _self_\nname: tiny\ninput_shape: [3, 32, 32]\nnum_classes: 10\n"
        "stages:\n  - {block: conv_bn_relu, width: 8, repeat: 1}\nhead:\n  name: gap\n")
    where = ["-cd", "my_conf"] if how == "-cd" else [f"hydra.searchpath=[file://{conf}]"]
    cfg = composed([*where, "+experiment=mine"], tmp_path)
    assert cfg["model"]["name"] == "tiny" and cfg["optimizer"]["lr"] == 0.123
    assert cfg["tracking"]["experiment"] == "mine"
    assert cfg["model"]["stages"][0]["width"] == 8
    res = run_cli(["run", *where, "+experiment=nope"], cwd=tmp_path)  # the user's options are listed too
    assert res.returncode == 2 and "mine" in res.stderr and "adam_vs_sgd" in res.stderr, res.stderr
