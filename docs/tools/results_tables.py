"""Tables for docs/results.md, read from the MLflow store: seeds folded into mean and spread.

``hairlab compare EXPERIMENT`` lists every run; this groups an experiment's finished child
runs by every swept key except ``seed`` and prints, per group, the mean, the spread (min-max)
and the number of seeds of the chosen metrics, plus the run's wall time. It also draws the
accuracy-against-latency scatter of all runs of the given experiments.

    python docs/tools/results_tables.py adam_vs_sgd --tracking-uri sqlite:///mlflow.db
    python docs/tools/results_tables.py adam_vs_sgd bn_vs_nobn --scatter docs/img/acc_vs_latency.png
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

METRICS = ("val/acc", "test/acc", "val/loss", "test/loss", "train/loss", "throughput/img_s", "model/params",
           "hw/paper2012/latency_s", "hw/paper2012/flops", "hw/paper2012/macs")
#: Counts printed exactly; ``hw/*/ops`` is what runs before issue 12's units logged as ``flops``.
COUNTS = ("model/params", "hw/paper2012/ops", "hw/paper2012/flops", "hw/paper2012/macs")


def metric(run: Any, name: str) -> float | None:
    """``run``'s final ``name``; ``test/*`` of a run from before the split names is its ``val/*``.

    Those runs (no ``hairlab.selection_metric`` tag) logged every evaluation as ``val/*``, and
    without a validation split that was the test split.
    """
    from hairlab.tracking.summary import SELECTION_TAG

    metrics = run.data.metrics
    if name in metrics:
        return float(metrics[name])
    if name.startswith("hw/") and name.endswith("/flops") and name[:-len("flops")] + "ops" in metrics:
        return float(metrics[name[:-len("flops")] + "ops"])  # a run from before FLOPs and MACs were named
    old = "val/" + name[len("test/"):] if name.startswith("test/") else None
    if old and old in metrics and SELECTION_TAG not in run.data.tags and "test/acc" not in metrics:
        return float(metrics[old])
    return None
LATENCY = "hw/paper2012/latency_s"


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def child_runs(client: Any, name: str) -> list[Any]:
    """The experiment's job runs (sweep parents left out), oldest first."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise SystemExit(f"no MLflow experiment '{name}' in this store")
    runs = client.search_runs([exp.experiment_id], max_results=5000, order_by=["attributes.start_time ASC"])
    from hairlab.tracking.summary import is_parent

    return [r for r in runs if not is_parent(r)]


def swept_keys(client: Any, runs: list[Any]) -> list[str]:
    """Keys the runs' sweeps varied, as parameter names, ``seed`` excluded."""
    keys: list[str] = []
    for parent in {r.data.tags.get("mlflow.parentRunId") for r in runs} - {None}:
        tag = client.get_run(parent).data.tags.get("hairlab.swept_keys", "")
        keys += [k for k in tag.split(",") if k and k not in keys]
    params = {k for r in runs for k in r.data.params}
    out = []
    for key in keys:
        name = key if key in params else f"{key}.name"
        if key != "seed" and name in params and name not in out:
            out.append(name)
    return out


def outcome(run: Any) -> str:
    """hairlab's outcome of a run, with the step for a diverged one."""
    from hairlab.tracking.summary import outcome as base

    state = base(run)
    return f"{state}@{run.data.tags.get('diverged_step', '?')}" if state == "DIVERGED" else state


def _fmt(values: list[float], metric: str) -> str:
    if not values:
        return ""
    scale, digits = (100.0, 1) if metric.endswith("/acc") else (1.0, 4)
    if metric in COUNTS:
        return " / ".join(f"{v:,.0f}" for v in sorted(set(values)))
    if metric.startswith("throughput"):
        scale, digits = 1.0, 0
    mean = statistics.fmean(values) * scale
    if len(set(values)) == 1:
        return f"{mean:.{digits}f}"
    lo, hi = min(values) * scale, max(values) * scale
    return f"{mean:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def table(client: Any, name: str, metrics: tuple[str, ...] = METRICS, by: tuple[str, ...] = ()) -> str:
    """A markdown table: one row per setting, seeds folded into mean (min-max)."""
    runs = child_runs(client, name)
    keys = swept_keys(client, runs)
    extra = [k for k in ("optimizer.lr", *by)
             if k not in keys and len({r.data.params.get(k) for r in runs}) > 1]
    groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for run in runs:
        # a killed or failed run is its own row: its metrics stop early and must not be averaged in
        state = "FINISHED" if run.info.status == "FINISHED" else outcome(run)
        groups[(*(run.data.params.get(k, "") for k in keys + extra), state)].append(run)
    present = [m for m in metrics if any(metric(r, m) is not None for r in runs)]
    head = [*keys, *extra, "seeds", "outcome", *present, "wall min/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for group, members in groups.items():
        outcomes = sorted({outcome(r) for r in members})
        cells = [*group[:-1], str(len(members)), ", ".join(outcomes)]
        for m in present:
            cells.append(_fmt([v for v in (metric(r, m) for r in members) if v is not None], m))
        walls = [(r.info.end_time - r.info.start_time) / 60000 for r in members if r.info.end_time]
        cells.append(f"{statistics.fmean(walls):.1f}" if walls else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scatter(client: Any, names: list[str], path: Path) -> Path:
    """Final accuracy against predicted latency on paper2012, every trained run of ``names``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        for name in names:
            runs = [r for r in child_runs(client, name)
                    if LATENCY in r.data.metrics and r.info.status == "FINISHED"]  # not killed midway
            pts = [(r.data.metrics[LATENCY] * 1e3, metric(r, "test/acc")) for r in runs]
            pts = [(x, y * 100) for x, y in pts if y is not None]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=name, s=18, alpha=0.75)
        ax.set_xlabel("predicted latency on paper2012 (ms/image, faithful)")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--metrics", nargs="*", default=list(METRICS), help="metrics to show, when logged")
    parser.add_argument("--by", nargs="*", default=[], help="also group by these params (when they vary)")
    parser.add_argument("--scatter", type=Path, help="also write the accuracy-vs-latency PNG here")
    args = parser.parse_args()
    client = _client(args.tracking_uri)
    for name in args.experiments:
        print(f"### {name}\n\n{table(client, name, tuple(args.metrics), by=tuple(args.by))}")
    if args.scatter:
        print(f"wrote {scatter(client, args.experiments, args.scatter)}")


if __name__ == "__main__":
    main()
