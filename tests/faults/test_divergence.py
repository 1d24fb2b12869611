"""Divergence means any non-finite loss, and bad values never create a run.

Real ``hairlab run`` processes against a real SQLite store: Adam at ``optimizer.lr=1e9``
ends tagged diverged (today's main left it FINISHED with a NaN val/loss, ranked best by
``compare``); ``trainer.epochs=many`` and ``trainer.grad_clip=-1`` are refused in one line
with exit status 2 before any run (or sweep parent) exists.
"""

from __future__ import annotations

import math
from pathlib import Path

import faultkit as fk
import pytest


def test_adam_at_a_huge_lr_is_tagged_diverged(workdir: Path) -> None:
    code, out = fk.run(["-m", *fk.TINY, "trainer.epochs=2", "optimizer.lr=1e9"], workdir)
    uri = fk.sqlite_uri(workdir)
    (run,) = fk.children(fk.all_runs(uri))
    assert run.data.tags.get("diverged") == "true", (run.data.tags, out[-2000:])
    assert run.info.status == "FINISHED"
    assert code != 0, out[-2000:]  # tracking.fail_on_diverged (default true)
    val = fk.client(uri).get_metric_history(run.info.run_id, "test/loss")  # no val split: test is evaluated
    # whatever went non-finite first (train or eval loss), no finite "result" hides it
    if val and all(math.isfinite(m.value) for m in val):
        assert run.data.tags.get("diverged_metric") is None
    if any(not math.isfinite(m.value) for m in val):
        assert run.data.tags.get("diverged_metric") == "test/loss", run.data.tags


@pytest.mark.parametrize(("override", "key"), [("trainer.epochs=many", "trainer.epochs"),
                                               ("trainer.grad_clip=-1", "trainer.grad_clip")])
@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_bad_values_never_create_a_run(workdir: Path, override: str, key: str, sweep: bool) -> None:
    args = (["-m", "optimizer.lr=0.001,0.002"] if sweep else []) + [*fk.TINY, override]
    code, out = fk.run(args, workdir)
    assert code == 2, out[-3000:]
    lines = [line for line in out.splitlines() if line.strip() and "INFO" not in line]
    assert len(lines) == 1 and lines[0].startswith("hairlab:") and key in lines[0], out[-3000:]
    assert "Traceback" not in out
    # no store at all, or one without a single run (opening a missing store would create it)
    assert not (workdir / "mlflow.db").exists() or fk.all_runs(fk.sqlite_uri(workdir)) == []


class _NaNEval:
    """A DataModule (the protocol only) whose training batches are finite and whose test split is NaN."""

    name, num_classes, input_shape = "nan-eval", 4, (3, 16, 16)

    def __init__(self) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 3, 16, 16, generator=g)
        self.y = torch.randint(0, 4, (32,), generator=g)

    def info(self) -> dict[str, int]:
        return {"train_size": 32}

    def num_examples(self, split: str) -> int:
        return 32 if split in ("train", "test") else 0

    def train_batches(self, batch_size: int, *, device: object, generator: object) -> list[tuple[object, object]]:
        return [(self.x[i:i + batch_size], self.y[i:i + batch_size]) for i in range(0, 32, batch_size)]

    def eval_batches(self, split: str, batch_size: int, *, device: object) -> list[tuple[object, object]]:
        return [(self.x[:batch_size] * float("nan"), self.y[:batch_size])]


def test_a_nan_evaluation_loss_is_divergence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The eval half of "any non-finite loss": training losses finite, test/loss NaN -> diverged."""
    from omegaconf import OmegaConf

    from hairlab.plugin_manager import get_host
    from hairlab.tracking.base import LocalTracker, read_metrics
    from hairlab.training import job as job_module

    monkeypatch.setattr(job_module, "build_data", lambda cfg, host: _NaNEval())
    model = {"name": "tiny", "input_shape": [3, 16, 16], "num_classes": 4, "downsample": "max_pool",
             "stages": [{"block": "conv_bn_relu", "width": 8}, {"block": "dw_separable", "width": "num_classes"}],
             "head": {"name": "gap"}}
    cfg = OmegaConf.create({"task": "train", "seed": 0, "hw_targets": [], "model": model,
                            "dataset": {"name": "synthetic"}, "optimizer": {"name": "adam", "lr": 0.01},
                            "trainer": {"epochs": 3, "batch_size": 16, "progress": False,
                                        "checkpoint_dir": str(tmp_path / "ckpt")}})
    tracker = LocalTracker(tmp_path / "run")
    result = job_module.train_job(cfg, tracker, get_host())
    tracker.close()
    assert result["status"] == "diverged" and result["diverged_step"] == 2, result
    assert math.isfinite(result["last_finite_loss"])
    assert tracker.tags["diverged"] == "true" and tracker.tags["diverged_metric"] == "test/loss"
    assert tracker.tags["hairlab.stop_reason"] == "diverged"
    rows = [r for r in read_metrics(tmp_path / "run") if "test/loss" in r]
    assert len(rows) == 1 and math.isnan(rows[0]["test/loss"])  # logged, then the fit stopped
