"""Training throughput: hairlab's engine vs a minimal plain-PyTorch loop, same model, same run.

Both train HairNet-CIFAR (conf/model/hairnet_cifar.yaml) at batch 128 with Adam, channels_last,
from the same initial weights. The plain loop feeds one fixed in-memory batch (the floor of
what any loop can cost); the engine runs its real path: the ``synthetic`` DataModule's
shuffled, cropped, flipped and normalized batches, loss bookkeeping, LR schedule, progress
accounting (no evaluation, no checkpoint).

The machine this project runs on is shared, and other people's load swings the rate of either
loop by 5x within a minute, more than any difference between the loops. So the two are
interleaved **step by step**: the engine's batch iterator runs one plain-loop step (timed)
before handing over each batch, and the engine's time is the fit's wall time minus those plain
steps. Each pair of steps runs within a second, under the same load. ``engine_no_aug`` turns
the augmentation off, to separate the data pipeline from the loop.

Run: ``python tests/benchmarks/bench_train.py [--steps N] [--rounds R]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Iterator
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
    from hairlab.plugin_manager import get_host

    torch.manual_seed(0)
    return build_model(OmegaConf.load(ROOT / "conf" / "model" / "hairnet_cifar.yaml"), get_host())


class PlainLoop:
    """The baseline: the shortest correct channels_last training loop, one step at a time."""

    def __init__(self) -> None:
        self.net = model().to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(BATCH, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (BATCH,), generator=g)
        self.seconds = 0.0
        self.steps = 0

    def step(self) -> None:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(self.net(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.seconds += time.perf_counter() - start
        self.steps += 1


class Interleaved:
    """A DataModule wrapper that runs one plain-loop step before yielding each training batch."""

    def __init__(self, data: Any, plain: PlainLoop) -> None:
        self.data, self.plain = data, plain
        self.name, self.num_classes, self.input_shape = data.name, data.num_classes, data.input_shape

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)

    def train_batches(self, batch_size: int, **kw: Any) -> Any:
        inner = self.data.train_batches(batch_size, **kw)
        plain = self.plain

        class Batches:
            def __len__(self) -> int:
                return len(inner)

            def __iter__(self) -> Iterator[Any]:
                for batch in inner:
                    plain.step()
                    yield batch

        return Batches()


def round_(steps: int, augment: bool) -> dict[str, float]:
    """One engine fit of ``steps`` steps, interleaved with as many plain steps."""
    from hairlab import contract
    from hairlab.plugin_manager import get_host, registry
    from hairlab.training.config import EngineConfig
    from hairlab.training.engine import Engine
    from hairlab.training.job import build_optimizer

    plain = PlainLoop()
    plain.step()  # its first step builds oneDNN primitives; not timed below
    plain.seconds, plain.steps = 0.0, 0
    data = registry("datasets").create("synthetic", num_train=steps * BATCH, num_test=BATCH,
                                       crop_padding=4 if augment else 0, hflip=augment)
    net = model()
    opt = build_optimizer(net, {"name": "adam", "lr": 1e-3}, get_host())
    cfg = contract.settings(EngineConfig, {"epochs": 1, "batch_size": BATCH, "eval_split": "none",
                                           "progress": False, "checkpoint": False, "final_test": False},
                            where="trainer")
    eng = Engine(net, opt, Interleaved(data, plain), cfg, NullTracker(), device=torch.device("cpu"), seed=0,
                 checkpoint_dir=None)
    start = time.perf_counter()
    outcome = eng.fit()
    engine_s = time.perf_counter() - start - plain.seconds
    assert outcome.status == "finished" and outcome.step == steps == plain.steps
    images = steps * BATCH
    return {"plain": images / plain.seconds, "engine": images / engine_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    round_(2, True)  # warm-up: kernels, plugin registry, data code paths
    aug = [round_(args.steps, True) for _ in range(args.rounds)]
    no_aug = [round_(args.steps, False) for _ in range(args.rounds)]

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    ratio = [r["engine"] / r["plain"] for r in aug]
    ratio_no_aug = [r["engine"] / r["plain"] for r in no_aug]
    print(json.dumps({
        "model": "hairnet_cifar", "batch": BATCH, "steps_per_round": args.steps, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "plain_img_s": round(med(aug + no_aug, "plain"), 1),
        "engine_img_s": round(med(aug, "engine"), 1),
        "engine_no_aug_img_s": round(med(no_aug, "engine"), 1),
        "ratio_engine_to_plain": round(statistics.median(ratio), 3),
        "ratio_engine_no_aug_to_plain": round(statistics.median(ratio_no_aug), 3),
        "ratios_per_round": [round(r, 3) for r in ratio],
        "ratios_no_aug_per_round": [round(r, 3) for r in ratio_no_aug],
    }))


if __name__ == "__main__":
    main()
