"""Learning-curve PNGs: one job's curves (train and the evaluated split, by its own name), and a
sweep's runs overlaid per metric."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

Series = Sequence[tuple[int, float]]

#: Metrics drawn as curves, in this order, when present (``val/*`` with a validation split,
#: ``test/*`` for the test split's evaluations; older stores have ``val/*`` only).
CURVE_METRICS = ("train/loss", "val/loss", "test/loss", "train/acc", "val/acc", "test/acc", "lr")
#: The splits a job's loss and accuracy plots draw, each under its own name.
SPLITS = ("train", "val", "test")


def metric_filename(metric: str) -> str:
    """``val/acc`` -> ``val_acc.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") + ".png"


def plot_series(series: Mapping[str, Series], path: str | Path, *, title: str, ylabel: str) -> Path | None:
    """Draw each labelled ``(step, value)`` series on one axis; None when all are empty."""
    return plot_bands({label: [pts] for label, pts in series.items()}, path, title=title, ylabel=ylabel)


def _band(members: Sequence[Series]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Mean, min and max over the members at the steps every member logged."""
    maps = [dict(m) for m in members]
    steps = sorted(set.intersection(*(set(m) for m in maps)))
    cols = [[m[s] for m in maps] for s in steps]
    return steps, [sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def plot_bands(groups: Mapping[str, Sequence[Series]], path: str | Path, *, title: str, ylabel: str) -> Path | None:
    """One line per label: a lone series as is, several (seeds) as their mean with a min-max band.

    Seeds of one configuration drawn as one line with its spread keep a 12-run sweep readable and
    show whether two settings' differences exceed seed noise. None when every series is empty.
    """
    drawable = {label: [m for m in members if m] for label, members in groups.items()}
    drawable = {label: members for label, members in drawable.items() if members}
    if not drawable:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab10" if len(drawable) <= 10 else "tab20").colors  # type: ignore[attr-defined]
    styles = ("-", "--", ":", "-.")
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    try:
        values: list[float] = []
        for i, (label, members) in enumerate(sorted(drawable.items())):
            steps, mean, low, high = _band(members)
            if not steps:  # the seeds logged at different steps: no band, the first seed's curve
                ordered = sorted(members[0])
                steps, mean = [p[0] for p in ordered], [p[1] for p in ordered]
                low = high = mean
            colour, style = palette[i % len(palette)], styles[(i // len(palette)) % len(styles)]
            name = label if len(members) == 1 else f"{label} (mean of {len(members)}, min-max)"
            ax.plot(steps, mean, style, color=colour, label=name, marker="o" if len(steps) < 12 else None,
                    markersize=3, linewidth=1.4)
            if len(members) > 1:
                ax.fill_between(steps, low, high, color=colour, alpha=0.15, linewidth=0)
            values.extend([*low, *high])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if _log_axis(ylabel, values):
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # never over a curve
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, bbox_inches="tight")  # the outside legend included, however long its labels
        return out
    finally:
        plt.close(fig)


def _log_axis(ylabel: str, values: Sequence[float]) -> bool:
    """A log axis where values span decades: losses over ~5x (divergence, long runs), learning rates
    over 10x (warm-up, decay; a linear axis puts 1e-3 flat on zero beside 0.1)."""
    positive = [v for v in values if v > 0]
    if not positive:
        return False
    if ylabel.endswith("loss"):
        return min(values) > 0 and max(values) / min(values) > 5
    if ylabel in ("lr", "learning rate"):
        return max(positive) / min(positive) >= 10
    return False


def job_curves(history: Mapping[str, Series], directory: str | Path) -> list[Path]:
    """A job's curves: loss and accuracy (train and each evaluated split, by its own name), learning rate."""
    out: list[Path] = []
    directory = Path(directory)
    for name in ("loss", "acc"):
        series = {split: history.get(f"{split}/{name}", ()) for split in SPLITS}
        path = plot_series(series, directory / f"{name}.png", title=name, ylabel=name)
        if path:
            out.append(path)
    if history.get("lr"):
        path = plot_series({"lr": history["lr"]}, directory / "lr.png", title="learning rate", ylabel="lr")
        if path:
            out.append(path)
    return out


def overlay_curves(
    runs: Mapping[str, Mapping[str, Series]], directory: str | Path, metrics: Sequence[str] = CURVE_METRICS,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> list[Path]:
    """One PNG per metric with every run's curve overlaid (label: run name).

    ``groups`` (line label -> run labels, e.g. the seeds of one configuration) draws each group
    as one mean line with a min-max band instead.
    """
    groups = groups or {label: [label] for label in runs}
    out: list[Path] = []
    for metric in metrics:
        bands = {g: [runs[r].get(metric, ()) for r in members] for g, members in groups.items()}
        path = plot_bands(bands, Path(directory) / metric_filename(metric), title=metric, ylabel=metric)
        if path:
            out.append(path)
    return out
