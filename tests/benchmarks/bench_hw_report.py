"""Benchmark the cost model: its own cost, and how well the host target predicts this CPU.

Run: ``python tests/benchmarks/bench_hw_report.py [--model hairnet_imagenet] [--repeats 15]``.
Prints one JSON object:
- ``latency_metrics_s``: what the per-run ``hw/*`` metrics cost (trace + engine, paper2012 and
  host from cache), with ``ratio_to_forward``: that cost over one plain eval forward pass of
  the same model (the baseline, measured in the same run);
- ``host``: predicted and measured total latency of the model on this CPU (one thread, thread
  CPU time, best of N; also the median and the wall-time median), ``predicted_over_measured``,
  per layer kind the predicted and measured sums, and the load average while measuring (the
  machine may be shared: wall time then includes time other processes took).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hairnet_imagenet")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    import torch

    from hairlab.costmodel import latency_metrics
    from hairlab.costmodel.api import target_defaults, target_from_config
    from hairlab.costmodel.engine import estimate
    from hairlab.costmodel.layers import extract_layers
    from hairlab.costmodel.measure import attach, measure_model
    from hairlab.hydra_app import compose
    from hairlab.models import build_model, model_input_shape
    from hairlab.plugin_manager import get_host

    cfg = compose([f"model={args.model}"])
    shape = model_input_shape(cfg.model)
    model = build_model(cfg.model, get_host()).eval()
    target = target_from_config(target_defaults("host"))  # calibrates once if not cached

    torch.set_num_threads(1)
    x = torch.zeros(1, *shape)
    with torch.no_grad():
        model(x)
        fwd = []
        for _ in range(5):
            t0 = time.perf_counter()
            model(x)
            fwd.append(time.perf_counter() - t0)
    forward_s = statistics.median(fwd)
    costs = []
    for _ in range(5):
        t0 = time.perf_counter()
        latency_metrics(model, shape, ["paper2012", "host"])
        costs.append(time.perf_counter() - t0)
    metrics_s = statistics.median(costs)

    report = estimate(extract_layers(model, shape), target, model=args.model, input_shape=shape)
    load_before = os.getloadavg()
    measurement = measure_model(model, shape, threads=target.threads, repeats=args.repeats)
    measured = attach(report, measurement)
    by_kind: dict[str, dict[str, float]] = {}
    for row, meas in zip(report.rows, measured, strict=True):
        item = by_kind.setdefault(row.kind, {"predicted_s": 0.0, "measured_s": 0.0})
        item["predicted_s"] += row.total_time_s
        item["measured_s"] += meas or 0.0
    for item in by_kind.values():
        ratio = item["predicted_s"] / item["measured_s"] if item["measured_s"] else None
        item["predicted_over_measured"] = ratio  # type: ignore[assignment]
    errors = [row.total_time_s / m for row, m in zip(report.rows, measured, strict=True) if m]
    predicted = report.totals["latency_s"]
    print(json.dumps({
        "model": args.model,
        "cpu": target.description,
        "latency_metrics_s": metrics_s,
        "forward_s": forward_s,
        "ratio_to_forward": metrics_s / forward_s,
        "host": {
            "predicted_s": predicted,
            "measured_best_s": measurement.total_s,
            "measured_median_s": measurement.total_median_s,
            "wall_median_s": measurement.wall_median_s,
            "predicted_over_measured": predicted / measurement.total_s,
            "predicted_over_measured_median": predicted / measurement.total_median_s,
            "clock": measurement.clock,
            "repeats": measurement.repeats,
            "per_layer_ratio_median": statistics.median(errors) if errors else None,
            "per_layer_within_0.5_2x": sum(0.5 <= e <= 2 for e in errors) / len(errors) if errors else None,
            "by_kind": by_kind,
            "loadavg_before": load_before,
            "loadavg_after": measurement.loadavg,
            "calibration": list(target.notes),
        },
    }, indent=1))


if __name__ == "__main__":
    main()
