"""Shared fixtures: isolated working dirs, caches, and a child environment for plugin installs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hairlab.plugin_manager import PluginHost

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's caches, MLflow store and plugin settings."""
    cache = tmp_path_factory.getbasetemp() / "hairlab-cache"
    monkeypatch.setenv("HAIRLAB_CACHE", str(cache))
    monkeypatch.setenv("HAIRLAB_CALIBRATION", "quick")  # the host target's few-second calibration
    monkeypatch.delenv("HAIRLAB_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("HAIRLAB_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, python: str = sys.executable,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hairlab ARGS`` the way a user's shell would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([python, "-m", "hairlab", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def child_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment layered on this one, for real `pip install`s of plugins.

    It sees this environment's packages (hairlab, torch, ...) through a .pth file, but what
    pip installs into it stays there, so installing a test plugin never leaks into the
    environment the rest of the suite runs in.
    """
    root = tmp_path_factory.mktemp("child-venv")
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          text=True, capture_output=True, check=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    # addsitedir (not a bare path line) so the parent's own .pth files run too: an editable
    # install of hairlab registers its import finder from one.
    Path(site, "00-parent-env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def pip_install(python: Path, path: Path) -> None:
    """A real pip install (wheel build and dist-info with entry points) into ``python``'s env."""
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(path)], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    """The installed plugins (built-ins included), in a host this test module made (nothing
    process-wide). A module may define its own ``host`` with fewer plugins."""
    from hairlab.plugin_manager import PluginHost

    made = PluginHost()
    made.load_entrypoints()
    made.collect()
    return made
