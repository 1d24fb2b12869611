"""Accuracy against predicted latency: every run a point, the Pareto front highlighted and labelled.

The axis label says what the latency is (target, mode, batch), because a prediction means
nothing without them. Reference points (runs the user names) are drawn as labelled stars; a
measured time beside a prediction (``hw/<target>/measured_s``) is drawn as a hollow marker
joined to its predicted point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Point:
    """One run on the chart: x (latency, seconds), y (accuracy, 0..1), its label."""

    x: float
    y: float
    label: str
    measured_x: float | None = None


@dataclass
class Chart:
    points: list[Point]
    front: list[int]
    xlabel: str
    ylabel: str
    title: str
    references: list[Point] = field(default_factory=list)
    #: Vertical markers: a configuration whose latency is known but whose accuracy is not.
    lines: list[tuple[float, str]] = field(default_factory=list)


def _ms(seconds: float) -> float:
    return seconds * 1e3


def draw(chart: Chart, path: str | Path, max_labels: int = 12) -> Path:
    """Write the chart as a PNG at ``path`` (latency in milliseconds, accuracy in percent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    others = [p for i, p in enumerate(chart.points) if i not in chart.front]
    on = sorted((chart.points[i] for i in chart.front), key=lambda p: p.x)
    if others:
        ax.scatter([_ms(p.x) for p in others], [100 * p.y for p in others], s=22, color="0.6",
                   label=f"runs ({len(chart.points)})", zorder=2)
    if on:
        ax.step([_ms(p.x) for p in on], [100 * p.y for p in on], where="post", color="tab:red", lw=1, alpha=0.6,
                zorder=3)
        ax.scatter([_ms(p.x) for p in on], [100 * p.y for p in on], s=46, color="tab:red",
                   label=f"Pareto front ({len(on)})", zorder=4)
        for p in on[:max_labels]:
            ax.annotate(p.label, (_ms(p.x), 100 * p.y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color="tab:red")
    measured = [p for p in chart.points + chart.references if p.measured_x is not None]
    for p in measured:
        mx = _ms(p.measured_x)  # type: ignore[arg-type]
        ax.plot([_ms(p.x), mx], [100 * p.y, 100 * p.y], color="tab:blue", lw=0.8, alpha=0.6, zorder=1)
    if measured:
        ax.scatter([_ms(p.measured_x) for p in measured], [100 * p.y for p in measured],  # type: ignore[arg-type]
                   s=30, facecolors="none", edgecolors="tab:blue", label="measured (same run)", zorder=2)
    for n, p in enumerate(chart.references):
        ax.scatter([_ms(p.x)], [100 * p.y], marker="*", s=160, color="tab:green", edgecolors="k", zorder=5,
                   label="reference runs" if n == 0 else None)
        ax.annotate(p.label, (_ms(p.x), 100 * p.y), textcoords="offset points", xytext=(6, -10), fontsize=8,
                    color="darkgreen")
    for x, label in chart.lines:
        ax.axvline(_ms(x), color="tab:green", ls="--", lw=1)
        ax.annotate(label, (_ms(x), ax.get_ylim()[0]), textcoords="offset points", xytext=(3, 6), fontsize=8,
                    color="darkgreen", rotation=90)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    ax.set_title(chart.title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: Short names for labels on a crowded chart.
ABBREVIATIONS = {"width_multiplier": "w", "kernel_size": "k", "weight_decay": "wd", "repeat": "r"}


def short_key(key: str) -> str:
    """``model.stages.2.repeat`` -> ``r2``, ``model.width_multiplier`` -> ``w``, ``optimizer.lr`` -> ``lr``."""
    segments = key.split(".")
    name = segments[-1]
    return ABBREVIATIONS.get(name, name) + "".join(s for s in segments if s.isdigit())


def label_of(params: dict[str, str], keys: Sequence[str], fallback: str) -> str:
    """A short label from the keys that vary (``w=0.5 k=3 r2=1 lr=0.1``)."""
    return " ".join(f"{short_key(k)}={_short(params[k])}" for k in keys if k in params) or fallback


def _short(value: str) -> str:
    try:
        v = float(value)
    except ValueError:
        return value
    return f"{v:.3g}"
