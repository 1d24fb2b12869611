"""The training engine through ``train_job``: metrics, determinism, resume, divergence, options."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

import hairlab.costmodel.api
from hairlab.errors import HairlabError
from hairlab.plugin_manager import get_host
from hairlab.tracking.base import LocalTracker, read_metrics
from hairlab.training import checkpoint as ckpt
from hairlab.training import job as job_module
from hairlab.training.job import train_job

TINY_MODEL = {
    "name": "tiny", "input_shape": [3, 16, 16], "num_classes": 4, "batch_norm": True,
    "block_defaults": {"batch_norm": "${..batch_norm}"}, "downsample": "max_pool",
    "stages": [{"block": "conv_bn_relu", "width": 8}, {"block": "dw_separable", "width": 16},
               {"block": "dw_separable", "width": "num_classes"}],
    "head": {"name": "gap"},
}
SYNTH = {"name": "synthetic", "num_classes": 4, "image_size": 16, "num_train": 96, "num_test": 40,
         "noise": 24.0, "crop_padding": 0, "hflip": False}
TIMING = {"time", "time/epoch_s", "time/train_s", "time/total_s", "throughput/img_s"}


def make_cfg(tmp: Path, **trainer: Any) -> Any:
    base = {"epochs": 2, "batch_size": 32, "progress": False, "log_every": 2,
            "checkpoint_dir": str(tmp / "ckpt")}
    base.update(trainer)
    return OmegaConf.create({"task": "train", "seed": 3, "hw_targets": [], "model": TINY_MODEL,
                             "dataset": dict(SYNTH), "optimizer": {"name": "adam", "lr": 0.01},
                             "trainer": base})


def run(cfg: Any, directory: Path) -> tuple[dict, list[dict], LocalTracker]:
    tracker = LocalTracker(directory)
    try:
        result = train_job(cfg, tracker, get_host())
    finally:
        tracker.close()
    return result, read_metrics(directory), tracker


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@contextlib.contextmanager
def killed_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The job inside is killed (KeyboardInterrupt) right after it writes its first last.pt, as a
    Ctrl-C between epochs would; the block expects that interrupt and restores the real save."""
    real_save = ckpt.save

    def save_then_die(path: Path, state: dict) -> Path:
        real_save(path, state)
        if path.name == ckpt.LAST:
            raise KeyboardInterrupt
        return path
    monkeypatch.setattr(ckpt, "save", save_then_die)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(ckpt, "save", real_save)


class TinyData:
    """A minimal DataModule (the protocol only), with an optional NaN batch to force divergence."""

    name, num_classes, input_shape = "tiny", 4, (3, 16, 16)

    def __init__(self, nan_batch: int | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 3, 16, 16, generator=g)
        self.y = torch.randint(0, 4, (64,), generator=g)
        self.nan_batch = nan_batch
        self.served = 0

    def info(self) -> dict[str, Any]:
        return {"train_size": 64}

    def num_examples(self, split: str) -> int:
        return 64 if split in ("train", "test") else 0

    def train_batches(self, batch_size: int, *, device: Any, generator: Any):
        perm = torch.randperm(64, generator=generator)
        out = []
        for i in range(0, 64, batch_size):
            x = self.x[perm[i:i + batch_size]].clone()
            if self.nan_batch is not None and len(out) == self.nan_batch:
                x[0, 0, 0, 0] = float("nan")
            out.append((x.to(device), self.y[perm[i:i + batch_size]].to(device)))
        return out

    def eval_batches(self, split: str, batch_size: int, *, device: Any):
        return [(self.x[i:i + batch_size].to(device), self.y[i:i + batch_size].to(device))
                for i in range(0, 64, batch_size)]


def test_train_job_logs_every_metric_and_checkpoints(tmp_path: Path) -> None:
    result, rows, tracker = run(make_cfg(tmp_path), tmp_path / "run")
    assert result["status"] == "finished" and result["epoch"] == 2 and result["step"] == 6
    assert rows[0]["step"] == 0 and rows[0]["model/params"] == result["model/params"] > 0
    epochs = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in epochs] == [3, 6]
    for name in ("train/loss", "train/acc", "test/loss", "test/acc", "lr", "throughput/img_s", "time/epoch_s"):
        assert all(math.isfinite(r[name]) for r in epochs), name
    assert not any(k.startswith("val/") for r in rows for k in r)  # no val split: nothing is called val
    assert tracker.tags["hairlab.selection_metric"] == "test/acc" == result["selection_metric"]
    assert tracker.tags["hairlab.stop_reason"] == "epochs" == result["stop_reason"]
    assert epochs[1]["train/loss"] < epochs[0]["train/loss"]
    assert any(k.startswith("data.") for k in tracker.tags)  # the dataset's facts (tags, not params)
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)  # safe loading works
    assert state["epoch"] == 2 and state["step"] == 6 and set(state["rng"]) >= {"torch", "data"}


def test_same_config_and_seed_give_identical_metrics(tmp_path: Path) -> None:
    _, a, _ = run(make_cfg(tmp_path / "a"), tmp_path / "a")
    _, b, _ = run(make_cfg(tmp_path / "b"), tmp_path / "b")
    assert untimed(a) == untimed(b)
    cfg = make_cfg(tmp_path / "c")
    cfg.seed = 4
    _, c, _ = run(cfg, tmp_path / "c")
    assert untimed(c) != untimed(a)


def test_resume_after_a_kill_continues_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, full, _ = run(make_cfg(tmp_path / "full", epochs=3), tmp_path / "full")

    with killed_after_first_checkpoint(monkeypatch):
        run(make_cfg(tmp_path / "killed", epochs=3), tmp_path / "killed")
    assert torch.load(tmp_path / "killed" / "ckpt" / "last.pt", weights_only=True)["epoch"] == 1

    resumed_cfg = make_cfg(tmp_path / "resumed", epochs=3, resume=str(tmp_path / "killed" / "ckpt"))
    result, resumed, tracker = run(resumed_cfg, tmp_path / "resumed")
    assert result["epoch"] == 3 and tracker.tags["resumed_from"].endswith("last.pt")
    # the resumed record holds the whole curve, and it is the uninterrupted run's curve
    assert untimed(resumed) == untimed(full)


def test_resume_auto_and_bad_checkpoints(tmp_path: Path) -> None:
    run(make_cfg(tmp_path, epochs=1), tmp_path / "one")
    result, rows, _ = run(make_cfg(tmp_path, epochs=2, resume=True), tmp_path / "two")
    assert result["epoch"] == 2 and [r["step"] for r in rows if "train/loss" in r] == [3, 6]
    with pytest.raises(HairlabError, match="no checkpoint there"):
        run(make_cfg(tmp_path, resume=str(tmp_path / "missing")), tmp_path / "x")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(HairlabError, match="cannot be read"):
        run(make_cfg(tmp_path, resume=str(bad)), tmp_path / "y")
    other = make_cfg(tmp_path, epochs=2, resume=str(tmp_path / "ckpt"))
    other.model.stages[1].width = 24
    with pytest.raises(HairlabError, match="does not fit"):
        run(other, tmp_path / "z")


def test_nonfinite_loss_ends_the_run_as_diverged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_module, "build_data", lambda cfg, host: TinyData(nan_batch=2))
    result, rows, tracker = run(make_cfg(tmp_path, epochs=3, batch_size=16, log_every=3), tmp_path / "run")
    assert result["status"] == "diverged"
    assert result["diverged_step"] == 3  # the third optimizer step saw the NaN batch
    assert math.isfinite(result["last_finite_loss"])
    assert tracker.tags["diverged"] == "true" and tracker.tags["diverged_step"] == "3"
    assert not [r for r in rows if "train/loss" in r]  # no epoch finished


def test_max_steps_spans_epochs(tmp_path: Path) -> None:
    result, rows, _ = run(make_cfg(tmp_path, epochs=5, max_steps=4), tmp_path / "run")
    assert result["step"] == 4 and result["epoch"] == 2
    assert [r["step"] for r in rows if "train/loss" in r] == [3, 4]


def test_eval_every_adds_mid_epoch_points_without_changing_training(tmp_path: Path) -> None:
    _, plain, _ = run(make_cfg(tmp_path / "a"), tmp_path / "a")
    _, dense, _ = run(make_cfg(tmp_path / "b", eval_every=2), tmp_path / "b")
    plain_pts = {int(r["step"]): r for r in plain if "train/loss" in r}
    dense_pts = {int(r["step"]): r for r in dense if "train/loss" in r}
    assert sorted(plain_pts) == [3, 6] and sorted(dense_pts) == [2, 3, 4, 6]  # 3 steps per epoch
    assert all("test/acc" in r for r in dense_pts.values())
    assert dense_pts[2]["epoch"] == pytest.approx(2 / 3) and dense_pts[4]["epoch"] == pytest.approx(1 + 1 / 3)
    # evaluating mid-epoch leaves training alone: the end of the run is the same
    assert dense_pts[6]["test/loss"] == pytest.approx(plain_pts[6]["test/loss"], rel=1e-6)
    # each point's train loss covers the steps since the previous point
    epoch1 = (2 * dense_pts[2]["train/loss"] + dense_pts[3]["train/loss"]) / 3
    assert epoch1 == pytest.approx(plain_pts[3]["train/loss"], rel=1e-6)


def test_options_schedules_smoothing_flip_and_val_split(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, schedule="onecycle", label_smoothing=0.1, tta_flip=True, warmup=2,
                   threads=1, channels_last=False)
    cfg.dataset.val_size = 16
    result, rows, tracker = run(cfg, tmp_path / "run")
    epochs = [r for r in rows if "train/loss" in r]
    assert epochs[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # one-cycle ends at min_lr_ratio=0
    assert "test/acc" in result and any("test/acc" in r for r in rows)
    # with a val split, the points are val/*, test/* comes once at the end, and val/acc ranks the run
    assert all("val/acc" in r and "test/acc" not in r for r in epochs)
    assert [r["step"] for r in rows if "test/acc" in r] == [epochs[-1]["step"]]
    assert tracker.tags["hairlab.selection_metric"] == "val/acc" == result["selection_metric"]
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("key,value,match", [
    ("epochs", "many", r"^trainer\.epochs='many': expected int or null \(trainer settings of hairlab\)"),
    ("epochs", 0, r"^trainer\.epochs=0: expected an integer >= 1 or null"),
    ("checkpoint", "always", r"^trainer\.checkpoint='always': expected last, best, both or none"),
    ("early_stop", {"patience": 0}, r"^trainer\.early_stop\.patience=0: expected an integer >= 1 \(trainer"),
    ("early_stop", {"mode": "up"}, r"^trainer\.early_stop\.mode='up': expected 'max' \| 'min' or null"),
    ("early_stop", {"min_delta": -1}, r"^trainer\.early_stop\.min_delta=-1.0: expected a number >= 0"),
    ("early_stop", {"wait": 2}, r"^trainer\.early_stop\.wait is not an option of trainer settings"),
    ("early_stop", "soon", r"^trainer\.early_stop='soon': expected bool or \{metric, mode, patience, min_delta\} or null .*"
                                  r"set e\.g\. trainer\.early_stop=true$"),
    ("max_steps", 0, r"^trainer\.max_steps=0: expected an integer >= 1 or null"),
    ("eval_every", 0, r"^trainer\.eval_every=0: expected an integer >= 1 or null"),
    ("grad_clip", -1, r"^trainer\.grad_clip=-1.0: expected a number > 0 or null"),
    ("schedule", "step", r"trainer\.schedule='step': expected 'constant' \| 'warmup' \| 'cosine' \| 'onecycle'"),
    ("eval_split", "train", r"trainer\.eval_split='train': expected 'auto' \| 'val' \| 'test' \| 'none'"),
    ("device", "tpu", "trainer.device"),
    ("amp", "maybe", r"trainer\.amp='maybe': expected auto, true, false, bf16 or fp16"),
    ("lr_decay", 0.1, r"^trainer\.lr_decay is not an option of trainer settings of hairlab; valid options: amp"),
])
def test_bad_trainer_options(tmp_path: Path, key: str, value: Any, match: str) -> None:
    cfg = make_cfg(tmp_path)
    OmegaConf.update(cfg, f"trainer.{key}", value, force_add=True)
    with pytest.raises(HairlabError, match=match):
        run(cfg, tmp_path / "run")


def test_hardware_latency_is_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake(model: Any, input_shape: tuple, targets: dict, host: Any) -> dict:
        seen.update(shape=input_shape, targets=dict(targets), training=model.training, host=host)
        return {f"hw/{t}/latency_s": 0.5 for t in targets}
    monkeypatch.setattr(hairlab.costmodel.api, "latency_metrics", fake)
    cfg = make_cfg(tmp_path, epochs=1)
    cfg.hw_targets = ["paper2012"]
    _, rows, _ = run(cfg, tmp_path / "run")
    assert rows[0]["hw/paper2012/latency_s"] == 0.5
    assert seen["shape"] == (3, 16, 16) and seen["targets"] == {"paper2012": None}
    assert seen["host"] is get_host()  # the job's host, passed down rather than looked up


def test_hairlab_run_cli(tmp_path: Path) -> None:
    from conftest import run_cli

    out = tmp_path / "job"
    proc = run_cli(["run", "model=hairnet_cifar", "dataset=synthetic", "dataset.num_train=64",
                    "dataset.num_test=32", "trainer.batch_size=32", "trainer.epochs=1", "tracking=local",
                    "hw_targets=[]", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_metrics(out)
    assert any("test/acc" in r for r in rows) and (out / "checkpoints" / "last.pt").is_file()
    assert json.loads((out / "tags.json").read_text())["status"] == "FINISHED"


def test_real_cost_model_metrics_are_logged(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, epochs=1, max_steps=1)
    cfg.hw_targets = ["paper2012"]
    _, rows, _ = run(cfg, tmp_path / "run")
    assert rows[0]["hw/paper2012/latency_s"] > 0
    assert rows[0]["hw/paper2012/params"] == rows[0]["model/params"]
