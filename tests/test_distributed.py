"""Data-parallel training under a real ``torchrun`` (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hairlab.errors import HairlabError
from hairlab.tracking.base import read_metrics
from hairlab.training.distributed import World, world_from_env

#: No BN (its batch statistics are per rank by design), SGD, no augmentation: the 2-rank run
#: must then follow the single-process run's losses up to float summation order.
JOB = ["model=hairnet_cifar", "model.batch_norm=false", "model.width_multiplier=0.25", "optimizer=sgd",
       "optimizer.lr=0.05", "dataset=synthetic", "dataset.num_train=128", "dataset.num_test=64",
       "dataset.crop_padding=0", "dataset.hflip=false", "trainer.batch_size=32", "trainer.epochs=2",
       "trainer.eval_every=2", "trainer.threads=1", "hw_targets=[]", "seed=5"]


def test_shard_splits_every_batch_across_ranks() -> None:
    x, y = torch.arange(10), torch.arange(10) * 2
    parts = [World(r, 3).shard(x, y) for r in range(3)]
    assert sorted(torch.cat([p[0] for p in parts]).tolist()) == list(range(10))
    assert all((p[1] == p[0] * 2).all() for p in parts)
    assert World().shard(x, y)[0] is x


def test_world_comes_from_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert world_from_env() == World(0, 1, 0) and world_from_env().main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world_from_env() == World(3, 4, 1) and not world_from_env().main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(HairlabError, match="RANK=4 does not fit WORLD_SIZE=4"):
        world_from_env()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "COLUMNS": "200"}


def _single(tmp_path: Path, name: str, *extra: str) -> dict[int, dict]:
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "hairlab", "run", *JOB, *extra, "tracking=local",
                           f"hydra.run.dir={out}"], cwd=tmp_path, env=_env(), text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "tags.json").read_text())["world_size"] == "1"
    return {int(r["step"]): r for r in read_metrics(out) if "train/loss" in r}


def _torchrun(tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "hairlab", "run", *JOB, *extra, f"hydra.run.dir={tmp_path / name}"],
                          cwd=tmp_path, env=_env(), text=True, capture_output=True, timeout=600)


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process_and_log_one_run(tmp_path: Path) -> None:
    ref = _single(tmp_path, "single")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _torchrun(tmp_path, "ddp", "tracking.experiment=ddp", f"tracking.uri={uri}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (proc.stdout + proc.stderr).count("x 2 processes") == 1  # progress from rank 0 alone

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1, "only rank 0 may log"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
    assert sorted(ref) == [2, 4, 6, 8]  # 4 steps per epoch, a point every 2
    for key in ("train/loss", "test/loss", "test/acc", "train/acc"):
        got = {h.step: h.value for h in client.get_metric_history(run.info.run_id, key)}
        assert sorted(got) == sorted(ref), key
        for step, row in ref.items():
            assert math.isclose(got[step], row[key], rel_tol=2e-4, abs_tol=1e-6), (key, step, got[step], row[key])
    # checkpoints are rank 0's alone
    assert (tmp_path / "ddp" / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_torchrun_ranks_train_on_halves_of_each_batch(tmp_path: Path) -> None:
    """With BN each rank normalizes its own 16 examples, so the losses must move off the
    single-process run's (batch statistics over 32): proof that the ranks split the batch."""
    ref = _single(tmp_path, "single", "model.batch_norm=true")
    proc = _torchrun(tmp_path, "ddp", "model.batch_norm=true", "tracking=local")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    got = {int(r["step"]): r for r in read_metrics(tmp_path / "ddp") if "train/loss" in r}
    assert sorted(got) == sorted(ref)
    assert not math.isclose(got[2]["train/loss"], ref[2]["train/loss"], rel_tol=1e-4)
