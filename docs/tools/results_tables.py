"""Tables for docs/results.md, read from the MLflow store: seeds folded into mean and spread.

``hairlab compare EXPERIMENT`` lists every run; this groups an experiment's finished child
runs by every swept key except ``seed`` and prints, per group, the mean, the spread (min-max)
and the number of seeds of the chosen metrics, plus the run's wall time. A swept config group
that writes other keys (``ablation=r3``, whose package is global) has no parameter of its own,
so its value is read from the run's ``hairlab.overrides`` tag. ``--contrast`` adds each group's
difference to a reference group with a 95% interval across seeds, the form a verdict that must
survive another machine takes (docs/results.md). It also draws the accuracy-against-latency
scatter of all runs of the given experiments.

    python docs/tools/results_tables.py adam_vs_sgd --tracking-uri sqlite:///mlflow.db
    python docs/tools/results_tables.py adam_vs_sgd --contrast test/acc --reference optimizer.name=sgd
    python docs/tools/results_tables.py cifar_ablation --contrast test/acc --reference previous
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
#: Figures derived from a run rather than logged by it: the optimizer steps it trained (the step
#: of its last ``train/loss`` point), the training images those steps saw (steps x batch), and
#: its training and whole-run time in minutes (what a time-budget run is compared by).
DERIVED = ("steps", "images", "train_min", "total_min")


def derive(client: Any, run: Any) -> None:
    """Add :data:`DERIVED` to ``run.data.metrics`` (in place; the store is not written)."""
    metrics = run.data.metrics
    history = client.get_metric_history(run.info.run_id, "train/loss")
    if history:
        steps = max(m.step for m in history)
        metrics["steps"] = float(steps)
        batch = run.data.params.get("trainer.batch_size")
        if batch and batch.isdigit():
            metrics["images"] = float(steps * int(batch))
    for name, key in (("train_min", "time/train_s"), ("total_min", "time/total_s")):
        if key in metrics:
            metrics[name] = metrics[key] / 60.0


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


def overrides(run: Any) -> dict[str, str]:
    """The run's command-line overrides (``hairlab.overrides``: ``key=value`` joined by commas)."""
    out = {}
    for item in run.data.tags.get("hairlab.overrides", "").split(","):
        key, sep, value = item.partition("=")
        if sep:
            out[key.lstrip("+~")] = value
    return out


def setting(run: Any, key: str) -> str:
    """``key``'s value in ``run``: its parameter, else its override (a config group such as ``ablation``)."""
    if key in run.data.params:
        return str(run.data.params[key])
    return overrides(run).get(key, "")


def swept_keys(client: Any, runs: list[Any]) -> list[str]:
    """Keys the runs' sweeps varied, as parameter names (or override keys), ``seed`` excluded."""
    keys: list[str] = []
    for parent in {r.data.tags.get("mlflow.parentRunId") for r in runs} - {None}:
        tag = client.get_run(parent).data.tags.get("hairlab.swept_keys", "")
        keys += [k for k in tag.split(",") if k and k not in keys]
    params = {k for r in runs for k in r.data.params}
    overridden = {k for r in runs for k in overrides(r)}
    out = []
    for key in keys:
        name = key if key in params else f"{key}.name"
        if name not in params and key in overridden:
            name = key  # a config group with no node of its own: its override names the setting
        if key != "seed" and (name in params or name in overridden) and name not in out:
            if len({setting(r, name) for r in runs}) > 1:  # a pinned key (one value) is no setting
                out.append(name)
    return out


def interval(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float]:
    """mean(a) - mean(b) and the half-width of its ``level`` interval (Welch's t, unequal variances).

    Seeds are independent draws of the training noise, so each group's seeds are a sample and the
    interval says how far the difference could move on other seeds (or another machine, whose
    runs are other draws of the same noise). Needs at least 2 values per group; with identical
    values in both groups the half-width is 0.
    """
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError("an interval needs at least 2 seeds per group")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return diff, 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, float(stats.t.ppf(0.5 + level / 2, df)) * (va + vb) ** 0.5


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
    if metric.startswith("throughput") or metric in ("steps", "images"):
        scale, digits = 1.0, 0
    if metric.endswith("_min"):
        scale, digits = 1.0, 1
    mean = statistics.fmean(values) * scale
    if len(set(values)) == 1:
        return f"{mean:.{digits}f}"
    lo, hi = min(values) * scale, max(values) * scale
    return f"{mean:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def natural(value: str) -> tuple[Any, ...]:
    """A sort key that orders ``r2`` before ``r10`` and ``0.01`` before ``0.1`` (numbers by value)."""
    import re

    parts = re.split(r"(\d+(?:\.\d+)?)", value)
    return tuple((0, float(p)) if i % 2 else (1, p) for i, p in enumerate(parts) if p)


def _contrast_cell(values: list[float], ref: list[float] | None, metric: str) -> str:
    if ref is None:
        return "reference"
    if len(values) < 2 or len(ref) < 2:
        return "(needs 2 seeds)"
    diff, half = interval(values, ref)
    scale = 100.0 if metric.endswith("/acc") else 1.0
    unit = " pts" if metric.endswith("/acc") else ""
    return f"{diff * scale:+.2f} ± {half * scale:.2f}{unit}"


Group = tuple[str, ...]


def references(finished: list[Group], names: list[str], reference: str) -> dict[Group, Group | None]:
    """Each finished setting's reference setting (None: it is the reference) for ``--reference``."""
    if not finished:
        return {}
    if reference == "previous":
        return {g: (finished[i - 1] if i else None) for i, g in enumerate(finished)}
    if reference == "first":
        base = finished[0]
    else:
        want = dict(item.split("=", 1) for item in reference.split(","))
        matches = [g for g in finished if all(k in names and g[names.index(k)] == v for k, v in want.items())]
        if not matches:
            raise SystemExit(f"--reference {reference}: no finished setting matches (keys: {', '.join(names)})")
        base = matches[0]
    return {g: (None if g == base else base) for g in finished}


def table(client: Any, name: str, metrics: tuple[str, ...] = METRICS, by: tuple[str, ...] = (),
          contrast: str | None = None, reference: str = "first") -> str:
    """A markdown table: one row per setting, seeds folded into mean (min-max).

    With ``contrast`` (a metric), a last column gives each setting's difference in it to the
    reference setting with a 95% interval: ``reference`` is ``first`` (the first row),
    ``previous`` (each row against the one above: an ablation, its rows sorted by their settings
    in natural order, r2 before r10, whenever each ran) or ``KEY=VALUE[,KEY=VALUE]``.
    Only FINISHED runs enter a contrast.
    """
    runs = child_runs(client, name)
    if any(m in DERIVED for m in metrics):
        for run in runs:
            derive(client, run)
    keys = swept_keys(client, runs)
    extra = [k for k in ("optimizer.lr", *by)
             if k not in keys and len({setting(r, k) for r in runs}) > 1]
    groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for run in runs:
        # a killed or failed run is its own row: its metrics stop early and must not be averaged in
        state = "FINISHED" if run.info.status == "FINISHED" else outcome(run)
        groups[(*(setting(run, k) for k in keys + extra), state)].append(run)
    present = [m for m in metrics if any(metric(r, m) is not None for r in runs)]
    head = [*keys, *extra, "seeds", "outcome", *present, "wall min/run"]
    if contrast:
        head.append(f"Δ {contrast} vs {reference} (95% CI)")
    if reference == "previous":  # an ablation: rows in their settings' order, whenever each ran
        groups = dict(sorted(groups.items(), key=lambda item: tuple(natural(v) for v in item[0])))
    finished = [g for g in groups if g[-1] == "FINISHED"]

    def values(group: tuple[str, ...]) -> list[float]:
        return [v for v in (metric(r, contrast or "") for r in groups[group]) if v is not None]

    ref_of = references(finished, keys + extra, reference) if contrast else {}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for group, members in groups.items():
        outcomes = sorted({outcome(r) for r in members})
        cells = [*group[:-1], str(len(members)), ", ".join(outcomes)]
        for m in present:
            cells.append(_fmt([v for v in (metric(r, m) for r in members) if v is not None], m))
        walls = [(r.info.end_time - r.info.start_time) / 60000 for r in members if r.info.end_time]
        cells.append(f"{statistics.fmean(walls):.1f}" if walls else "")
        if contrast:
            ref = ref_of.get(group, ())
            cells.append("" if ref == () else _contrast_cell(values(group), None if ref is None else values(ref),
                                                                 contrast))
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
    parser.add_argument("--contrast", metavar="METRIC",
                        help="add each setting's difference in METRIC to the reference, with a 95%% interval")
    parser.add_argument("--reference", default="first",
                        help="first (default), previous (each row against the one above, rows in natural order) or "
                             "KEY=VALUE[,KEY=VALUE]")
    args = parser.parse_args()
    client = _client(args.tracking_uri)
    for name in args.experiments:
        body = table(client, name, tuple(args.metrics), by=tuple(args.by), contrast=args.contrast,
                     reference=args.reference)
        print(f"### {name}\n\n{body}")
    if args.scatter:
        print(f"wrote {scatter(client, args.experiments, args.scatter)}")


if __name__ == "__main__":
    main()
