"""The CLI surface: help, version, plugin listings, and Hydra pass-through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli


def test_help_imports_neither_torch_nor_mlflow() -> None:
    code = (
        "import sys\n"
        "from hairlab.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'hydra', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY="), out


def test_version(tmp_path: Path) -> None:
    from hairlab import __version__

    res = run_cli(["--version"], cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"hairlab {__version__}"


def test_plugins_table_lists_builtins(tmp_path: Path) -> None:
    res = run_cli(["plugins"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("hairnet", "optim", "datasets", "hardware"):
        assert name in res.stdout
    assert "optimizers: adam, sgd" in res.stdout


def test_list_with_pattern(tmp_path: Path) -> None:
    res = run_cli(["list", "optimizers", "s*"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "sgd" in res.stdout and "adam" not in res.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list", "widgets"], "unknown plugin kind 'widgets'; choose one of: blocks, heads"),
        (["list", "optimizers", "zz*"], "no optimizers match 'zz*'; available: adam"),
        (["run", "optimizer=adamw"], "unknown optimizer option 'adamw'; available: adam, sgd"),
        (["run", "+experiment=nope"], "unknown experiment option 'nope'; available:"),
        (["run", "nosuchkey=3"], "nosuchkey"),
        (["run", "optimizer.lr=abc", "dataset=synthetic", "tracking=local", "hw_targets=[]"],
         "optimizer.lr='abc' is not a valid float"),
        (["run", "model.stages.1.block=nope", "dataset=synthetic", "tracking=local", "hw_targets=[]"],
         "unknown blocks entry 'nope'; available: conv_bn_relu"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    res = run_cli(args, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hairlab: ") and expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr


def test_cfg_job_shows_composed_config(tmp_path: Path) -> None:
    res = run_cli(["run", "--cfg", "job", "optimizer=sgd", "optimizer.lr=0.05"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "name: sgd" in res.stdout and "lr: 0.05" in res.stdout
    assert not (tmp_path / "outputs").exists()  # --cfg runs nothing


def test_info_searchpath_and_defaults(tmp_path: Path) -> None:
    res = run_cli(["run", "--info", "searchpath"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pkg://hairlab_conf" in res.stdout
    res = run_cli(["run", "--info", "defaults"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "optimizer/adam" in res.stdout


def test_hydra_help_passes_through(tmp_path: Path) -> None:
    res = run_cli(["run", "--help"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Override anything in the config" in res.stdout or "Powered by Hydra" in res.stdout


def test_config_tree_is_packaged() -> None:
    """Every YAML in conf/ ships in the wheel (package-data glob) and is reachable as a resource."""
    from importlib.resources import files

    root = files("hairlab_conf")
    assert root.joinpath("config.yaml").is_file()
    on_disk = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    for rel in on_disk:
        assert root.joinpath(rel).is_file(), rel
