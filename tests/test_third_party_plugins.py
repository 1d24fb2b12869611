"""Real pip installs of plugin packages: the example plugin works, a broken one is contained."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, pip_install, run_cli

EXAMPLE = REPO / "plugins" / "examples" / "hairlab-example-plugin"
BROKEN = REPO / "tests" / "fixtures" / "broken-plugin"


@pytest.fixture(scope="module")
def plugin_env(child_env: Path) -> Path:
    pip_install(child_env, EXAMPLE)
    pip_install(child_env, BROKEN)
    return child_env


def test_plugins_table_shows_example_and_contains_broken(plugin_env: Path, tmp_path: Path) -> None:
    res = run_cli(["plugins"], cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "hairlab-example-plugin" in out and "residual_dw" in out and "lion" in out
    # Import failure: named, with its distribution and the reason.
    assert "broken_import" in out and "import failed: ModuleNotFoundError" in out
    # Name clash and raising hook: reported, the rest of that plugin still registers.
    assert "already provided by plugin 'optim'" in out
    assert "this hook is broken on purpose" in out
    assert "hairlab-broken-plugin" in out


def test_list_optimizers_includes_plugin_entries(plugin_env: Path, tmp_path: Path) -> None:
    res = run_cli(["list", "optimizers"], cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 0, res.stderr
    for name in ("adam", "sgd", "lion", "broken_sgd"):
        assert name in res.stdout
    assert "impostor" not in res.stdout  # the clashing 'adam' was refused


def test_plugin_config_option_is_valid(plugin_env: Path, tmp_path: Path) -> None:
    res = run_cli(["run", "--cfg", "job", "optimizer=lion"], cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 0, res.stderr
    assert "name: lion" in res.stdout
    # And the same option is unknown where the plugin is not installed.
    res = run_cli(["run", "--cfg", "job", "optimizer=lion"], cwd=tmp_path)
    assert res.returncode == 2 and "unknown optimizer option 'lion'" in res.stderr


def test_disabling_a_plugin_by_env(plugin_env: Path, tmp_path: Path) -> None:
    res = run_cli(["list", "optimizers"], cwd=tmp_path, python=str(plugin_env),
                  env={"HAIRLAB_DISABLE_PLUGINS": "example"})
    assert res.returncode == 0 and "lion" not in res.stdout


def test_short_run_with_plugin_entries(plugin_env: Path, tmp_path: Path) -> None:
    res = run_cli(
        ["run", "model=example_resnet", "optimizer=lion", "dataset=synthetic", "tracking=local",
         "dataset.train_size=64", "dataset.test_size=32", "trainer.batch_size=32", "trainer.epochs=1",
         "trainer.max_steps=2", "hw_targets=[]"],
        cwd=tmp_path, python=str(plugin_env),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = list(tmp_path.glob("outputs/*/*/metrics.jsonl"))
    assert metrics, list(tmp_path.rglob("*"))
    assert "train/loss" in metrics[0].read_text()
