"""Tracking overhead: training throughput with and without MLflow tracking, in one run.

A real HairNet-CIFAR training loop (the model builder's ``hairnet_cifar``, channels_last,
random CIFAR-shaped tensors) logs four metrics on *every* step, far more often than the
engine does (once per epoch), as a worst case. Variants, interleaved over repeats so that
machine load hits them alike:

* ``none``: no tracking (the baseline);
* ``mlflow``: :class:`hairlab.tracking.mlflow_tracker.MLflowTracker` on a SQLite store
  (buffered calls, background ``log_batch``);
* ``mlflow_sync``: a synchronous ``MlflowClient.log_batch`` per step, the naive way, for
  reference.

Prints one JSON object: median img/s per variant, overhead vs the baseline (goal <= 2% for
``mlflow``), and the time the training thread itself spent inside tracking calls.

    python tests/benchmarks/bench_tracking.py [--steps 20] [--repeats 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


class NullTracker:
    def log_metrics(self, metrics: Any, step: int) -> None:
        pass

    def close(self, status: str = "FINISHED") -> None:
        pass


class SyncTracker:
    """One synchronous ``log_batch`` round trip per call."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: Any, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def build(batch: int) -> tuple[Any, Any, Any, Any]:
    import torch

    from hairlab.hydra_app import compose
    from hairlab.models import build_model

    torch.manual_seed(0)
    cfg = compose([])
    model = build_model(cfg.model, num_classes=10, input_shape=(3, 32, 32))
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    return model, opt, x, y


def train(model: Any, opt: Any, x: Any, y: Any, steps: int, tracker: Any) -> dict[str, float]:
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    in_tracker = 0.0
    start = time.perf_counter()
    for step in range(1, steps + 1):
        out = model(x)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = float((out.argmax(1) == y).float().mean())
        rate = step * x.shape[0] / (time.perf_counter() - start)
        metrics = {"train/loss": float(loss.detach()), "train/acc": acc, "lr": 0.01, "throughput/img_s": rate}
        t0 = time.perf_counter()
        tracker.log_metrics(metrics, step=step)
        in_tracker += time.perf_counter() - t0
    elapsed = time.perf_counter() - start
    t0 = time.perf_counter()
    tracker.close("FINISHED")
    close_s = time.perf_counter() - t0
    return {"img_s": steps * x.shape[0] / elapsed, "in_tracker_s": in_tracker, "loop_s": elapsed,
            "close_s": close_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    import torch

    from hairlab.tracking import store
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, opt, x, y = build(args.batch)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = store.client(uri)
    exp = store.ensure_experiment(client, "bench", uri)

    def make(kind: str) -> Any:
        if kind == "none":
            return NullTracker()
        run_id = client.create_run(exp, run_name=kind).info.run_id
        if kind == "mlflow":
            return MLflowTracker(client, run_id, flush_interval_s=2.0, plots=False, upload_artifacts=False)
        return SyncTracker(client, run_id)

    train(model, opt, x, y, 3, NullTracker())  # warm-up: oneDNN kernels, allocator
    kinds = ["none", "mlflow", "mlflow_sync"]
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for rep in range(args.repeats):
        order = kinds if rep % 2 == 0 else kinds[::-1]
        for kind in order:
            results[kind].append(train(model, opt, x, y, args.steps, make(kind)))

    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    base = median("none", "img_s")
    report: dict[str, Any] = {
        "benchmark": "tracking overhead (4 metrics logged every training step)",
        "model": "hairnet_cifar", "batch": args.batch, "steps": args.steps, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "img_s": {k: round(median(k, "img_s"), 1) for k in kinds},
        "img_s_all": {k: [round(r["img_s"], 1) for r in results[k]] for k in kinds},
    }
    for kind in ("mlflow", "mlflow_sync"):
        report[f"overhead_{kind}_pct"] = round(100 * (1 - median(kind, "img_s") / base), 2)
        in_calls = median(kind, "in_tracker_s") / median(kind, "loop_s")
        report[f"time_in_calls_{kind}_pct"] = round(100 * in_calls, 3)
        report[f"per_call_{kind}_us"] = round(1e6 * median(kind, "in_tracker_s") / args.steps, 1)
        report[f"close_{kind}_s"] = round(median(kind, "close_s"), 3)
    report["goal"] = "overhead_mlflow_pct <= 2"
    report["goal_met"] = report["overhead_mlflow_pct"] <= 2.0
    # Every logged value reached the store.
    runs = client.search_runs([exp], filter_string="attributes.run_name = 'mlflow'")
    stored = sum(len(client.get_metric_history(r.info.run_id, "train/loss")) for r in runs)
    report["mlflow_points_stored"] = stored
    report["mlflow_points_expected"] = args.steps * args.repeats
    print(json.dumps(report))


if __name__ == "__main__":
    main()
