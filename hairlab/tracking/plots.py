"""Learning-curve PNGs: one job's train/val curves, and a sweep's runs overlaid per metric."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

Series = Sequence[tuple[int, float]]

#: Metrics drawn as curves, in this order, when present.
CURVE_METRICS = ("train/loss", "val/loss", "train/acc", "val/acc", "lr")


def metric_filename(metric: str) -> str:
    """``val/acc`` -> ``val_acc.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") + ".png"


def plot_series(series: Mapping[str, Series], path: str | Path, *, title: str, ylabel: str) -> Path | None:
    """Draw each labelled ``(step, value)`` series on one axis; None when all are empty."""
    drawable = {label: pts for label, pts in series.items() if pts}
    if not drawable:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        for label, pts in sorted(drawable.items()):
            ordered = sorted(pts)
            ax.plot([p[0] for p in ordered], [p[1] for p in ordered], label=label,
                    marker="o" if len(ordered) < 12 else None, markersize=3, linewidth=1.4)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ylabel.endswith("loss") and all(v > 0 for pts in drawable.values() for _, v in pts):
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        return out
    finally:
        plt.close(fig)


def job_curves(history: Mapping[str, Series], directory: str | Path) -> list[Path]:
    """A job's curves: loss (train and val), accuracy (train and val), learning rate."""
    out: list[Path] = []
    directory = Path(directory)
    for name in ("loss", "acc"):
        series = {split: history.get(f"{split}/{name}", ()) for split in ("train", "val")}
        path = plot_series(series, directory / f"{name}.png", title=name, ylabel=name)
        if path:
            out.append(path)
    if history.get("lr"):
        path = plot_series({"lr": history["lr"]}, directory / "lr.png", title="learning rate", ylabel="lr")
        if path:
            out.append(path)
    return out


def overlay_curves(
    runs: Mapping[str, Mapping[str, Series]], directory: str | Path, metrics: Sequence[str] = CURVE_METRICS
) -> list[Path]:
    """One PNG per metric with every run's curve overlaid (label: run name)."""
    out: list[Path] = []
    for metric in metrics:
        series = {label: hist.get(metric, ()) for label, hist in runs.items()}
        path = plot_series(series, Path(directory) / metric_filename(metric), title=metric, ylabel=metric)
        if path:
            out.append(path)
    return out
