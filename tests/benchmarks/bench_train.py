"""Training throughput: hairlab's engine vs a minimal plain-PyTorch loop, same model, same run.

Both train HairNet-CIFAR (conf/model/hairnet_cifar.yaml) at batch 128 with Adam, channels_last,
from the same initial weights. The plain loop feeds one fixed in-memory batch (the floor of
what any loop can cost); the engine runs its real path: the ``synthetic`` DataModule's
shuffled, cropped, flipped and normalized batches, loss bookkeeping, LR schedule, progress
accounting. Rounds alternate (plain, engine, plain, engine, ...) so that load from other
processes hits both alike; the JSON reports the median of each and their ratio, plus the
engine without augmentation, to separate the data pipeline from the loop itself. On a shared
machine wall-clock rates swing with other people's load, so it also reports images per
CPU-second of this process (all threads), which measures the work each loop does.

Run: ``python tests/benchmarks/bench_train.py [--steps N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
BATCH = 128


class NullTracker:
    def log_params(self, params: Any) -> None: ...
    def log_metrics(self, metrics: Any, step: int) -> None: ...
    def set_tags(self, tags: Any) -> None: ...
    def log_artifact(self, path: Any, artifact_path: Any = None) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


def model() -> torch.nn.Module:
    from hairlab.models import build_model

    torch.manual_seed(0)
    return build_model(OmegaConf.load(ROOT / "conf" / "model" / "hairnet_cifar.yaml"))


def plain(steps: int) -> tuple[float, float]:
    """The baseline: the shortest correct channels_last training loop."""
    net = model().to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return rates(steps, start, cpu)


def rates(steps: int, start: float, cpu: float) -> tuple[float, float]:
    """Images per wall-clock second, and per CPU-second of this process (all its threads)."""
    images = steps * BATCH
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu)


def engine(steps: int, augment: bool) -> tuple[float, float]:
    """hairlab's engine on in-memory synthetic data, as a run would use it (no eval, no checkpoint)."""
    from hairlab.plugin_manager import registry
    from hairlab.training.engine import Engine, EngineConfig
    from hairlab.training.job import build_optimizer

    data = registry("datasets").create("synthetic", num_train=steps * BATCH, num_test=BATCH,
                                       crop_padding=4 if augment else 0, hflip=augment)
    net = model()
    opt = build_optimizer(net, {"name": "adam", "lr": 1e-3})
    cfg = EngineConfig.from_mapping({"epochs": 1, "batch_size": BATCH, "eval_split": "none",
                                     "progress": False, "checkpoint": False, "final_test": False})
    eng = Engine(net, opt, data, cfg, NullTracker(), device=torch.device("cpu"), seed=0, checkpoint_dir=None)
    start, cpu = time.perf_counter(), time.process_time()
    outcome = eng.fit()
    out = rates(steps, start, cpu)
    assert outcome.status == "finished" and outcome.step == steps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain(3)  # warm up oneDNN's kernels for both
    engine(3, True)
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "engine": [], "engine_no_aug": []}
    for _ in range(args.rounds):
        runs["plain"].append(plain(args.steps))
        runs["engine"].append(engine(args.steps, True))
        runs["engine_no_aug"].append(engine(args.steps, False))
    med = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({
        "model": "hairnet_cifar", "batch": BATCH, "steps_per_round": args.steps, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_avg_1m": load,
        "plain_img_s": round(med["plain"], 1), "engine_img_s": round(med["engine"], 1),
        "engine_no_aug_img_s": round(med["engine_no_aug"], 1),
        "ratio_engine_to_plain": round(med["engine"] / med["plain"], 3),
        "ratio_engine_no_aug_to_plain": round(med["engine_no_aug"] / med["plain"], 3),
        "plain_img_per_cpu_s": round(cpu["plain"], 1), "engine_img_per_cpu_s": round(cpu["engine"], 1),
        "engine_no_aug_img_per_cpu_s": round(cpu["engine_no_aug"], 1),
        "cpu_ratio_engine_to_plain": round(cpu["engine"] / cpu["plain"], 3),
        "cpu_ratio_engine_no_aug_to_plain": round(cpu["engine_no_aug"] / cpu["plain"], 3),
        "rounds_img_s": {k: [round(w, 1) for w, _ in v] for k, v in runs.items()},
    }))


if __name__ == "__main__":
    main()
