"""Real pip installs of plugin packages: the example plugin works, a broken one is contained."""

from __future__ import annotations

import json
import subprocess
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
    assert "example" in res.stdout and "residual_dw" in res.stdout
    res = run_cli(["plugins", "--format", "json"], cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 0, res.stderr
    plugins = {p["plugin"]: p for p in json.loads(res.stdout)}
    example = plugins["example"]
    assert example["status"] == "ok" and example["distribution"] == "hairlab-example-plugin"
    assert example["provides"]["blocks"] == ["residual_dw"] and "lion" in example["provides"]["optimizers"]
    # Import failure: named, with its distribution and the reason.
    broken = plugins["broken_import"]
    assert broken["status"] == "failed" and broken["distribution"] == "hairlab-broken-plugin"
    assert "import failed: ModuleNotFoundError" in broken["reason"]
    # Name clash and raising hook: reported, the rest of that plugin still registers.
    hook = plugins["broken_hook"]
    assert hook["status"] == "partial" and hook["provides"]["optimizers"] == ["broken_sgd"]
    assert "already provided by plugin 'optim'" in hook["reason"]
    assert "this hook is broken on purpose" in hook["reason"]
    # SystemExit(0) at import, and from a hook: contained like any other failure.
    assert plugins["exits_at_import"]["status"] == "failed"
    assert plugins["exits_at_import"]["reason"] == "import failed: SystemExit: 0"
    assert "hairlab_hardware raised SystemExit: 0" in hook["reason"]
    assert all(plugins[name]["status"] == "ok" for name in ("hairnet", "optim", "datasets", "hardware"))


def test_a_plugin_exiting_at_import_cannot_end_a_command(plugin_env: Path, tmp_path: Path) -> None:
    """Each command's exit status is its own, whatever a plugin's import does."""
    res = run_cli(["list", "hardware"], cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 0 and "paper2012" in res.stdout, res.stdout + res.stderr
    res = run_cli(["list", "kinds_that_do_not_exist"], cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 2 and "unknown plugin kind" in res.stderr
    # An unknown name points at the plugins that failed to load: the name may be theirs.
    res = run_cli(["hw-report", "model=hairnet_cifar", "hardware.name=mobile_npu"], cwd=tmp_path,
                  python=str(plugin_env))
    assert res.returncode == 2, res.stdout + res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "unknown hardware entry 'mobile_npu'" in line, res.stderr
    assert "plugins 'broken_hook', 'broken_import', 'exits_at_import' failed to load (hairlab plugins)" in line
    # The same for a config option (a model preset) the failed plugins might have shipped.
    res = run_cli(["run", "model=mobilenet_v1_cifar"], cwd=tmp_path, python=str(plugin_env))
    line = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and line.startswith("hairlab: unknown model option 'mobilenet_v1_cifar'; available: ")
    assert line.endswith("; note: plugins 'broken_import', 'exits_at_import' failed to load (hairlab plugins)"), line


def test_the_example_plugins_own_tests_pass(plugin_env: Path, tmp_path: Path) -> None:
    """Its pytest file builds the model through a PluginHost it makes (docs/plugins.md, "Testing")."""
    res = subprocess.run([str(plugin_env), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                         cwd=EXAMPLE, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout


def test_plugin_options_are_listed_from_its_schema(plugin_env: Path, tmp_path: Path) -> None:
    res = run_cli(["list", "optimizers", "lion", "--format", "json"], cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["plugin"] == "example" and data["distribution"] == "hairlab-example-plugin"
    lr = {o["option"]: o for o in data["options"]}["lr"]
    assert lr == {"option": "lr", "type": "float", "default": 0.0001, "help": "step size, > 0"}
    # Defined once (the schema, no YAML), checked before anything runs, owner named.
    res = run_cli(["run", "optimizer=lion", "optimizer.lr=abc", "dataset=synthetic", "tracking=local"],
                  cwd=tmp_path, python=str(plugin_env))
    assert res.returncode == 2 and "optimizer.lr='abc'" in res.stderr and "plugin example" in res.stderr
    assert not list(tmp_path.rglob("metrics.jsonl"))  # nothing ran


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
