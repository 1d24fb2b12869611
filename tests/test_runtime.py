"""Where a run executes: the thread share of a job under a parallel Hydra launcher."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hydra.core.hydra_config import HydraConfig

from hairlab.training import runtime


def _launcher(monkeypatch: pytest.MonkeyPatch, launcher: dict[str, Any], cores: int = 8) -> None:
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: SimpleNamespace(launcher=launcher)))
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: cores)


@pytest.mark.parametrize("n_jobs,threads", [(2, 4), (3, 2), (8, 1), (16, 1), (-1, 1), (-5, 2), (None, 1)])
def test_joblib_jobs_share_the_cores(monkeypatch: pytest.MonkeyPatch, n_jobs: Any, threads: int) -> None:
    _launcher(monkeypatch, {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                            "n_jobs": n_jobs})
    assert runtime.default_threads() == threads


def test_other_launchers_and_no_hydra_keep_torch_default(monkeypatch: pytest.MonkeyPatch) -> None:
    _launcher(monkeypatch, {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    assert runtime.default_threads() is None
    monkeypatch.undo()
    assert runtime.default_threads() is None  # outside a Hydra job: HydraConfig is not set
