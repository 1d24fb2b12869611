"""Roofline chart of a report: attainable = min(peak, bandwidth x arithmetic intensity).

Each row is a point at (FLOPs per bus byte, FLOPs / predicted time); one roof per compute unit
(matrix, generic, and any per-kind rate the target has). Rows that move no bytes over the
bus have infinite intensity and are drawn at the right edge. The slowest rows are labelled
with the tags the text summary uses (``#3 max_pool``), chosen by the same ordering
(:func:`~hairlab.costmodel.engine.slowest_rows`), so a row named in the summary can be found on
the picture; a box lists them with their times.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hairlab.costmodel.engine import Report, Row, row_tag, slowest_rows
from hairlab.costmodel.target import format_rate
from hairlab.errors import HairlabError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: How many of the slowest rows are labelled by default (the summary names the first 3).
LABELLED_ROWS = 5
#: Label offsets tried around a point (points), nearest first: the first whose box overlaps no
#: label already placed (and stays inside the axes) is used.
_OFFSETS = [(r * dx, r * dy) for r in (14, 30, 46, 62)
            for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.2), (0, -1.2), (1.4, 0), (-1.4, 0))]


def _point(row: Row, edge: float) -> tuple[float, float]:
    return (row.intensity if math.isfinite(row.intensity) else edge, row.flops / row.total_time_s)


def _label(fig: Figure, ax: Axes, rows: list[Row], edge: float) -> None:
    """Tag each row's point with ``#index label``, nudged until the tags do not overlap.

    Rows drawn at the same spot (a repeated block's identical layers) share one tag, one line each.
    """
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    groups: list[tuple[tuple[float, float], Any, list[Row]]] = []
    for row in rows:
        xy = _point(row, edge)
        px = ax.transData.transform(xy)
        for _, other, members in groups:
            if abs(px[0] - other[0]) < 6 and abs(px[1] - other[1]) < 6:
                members.append(row)
                break
        else:
            groups.append((xy, px, [row]))
    placed: list[Any] = []
    style: dict[str, Any] = {
        "textcoords": "offset points", "fontsize": 8, "va": "center", "zorder": 5,
        "bbox": {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.5", "alpha": 0.9},
        "arrowprops": {"arrowstyle": "-", "color": "0.3", "lw": 0.7}}
    for xy, _, members in groups:
        text = "\n".join(row_tag(r) for r in members)
        for dx, dy in _OFFSETS:
            ann = ax.annotate(text, xy, xytext=(dx, dy), ha="left" if dx >= 0 else "right", **style)
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            ann.remove()
        else:  # nowhere free: the nearest place, overlapping, beats no tag at all
            dx, dy = _OFFSETS[0]
            ann = ax.annotate(text, xy, xytext=(dx, dy), ha="left", **style)
            ann.update_positions(renderer)
            placed.append(Text.get_window_extent(ann, renderer))


def roofline_figure(report: Report, labels: int = LABELLED_ROWS) -> Figure:
    """The chart as a matplotlib figure (Agg), the ``labels`` slowest rows tagged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = report.target
    rows = [r for r in report.rows if r.flops > 0 and r.total_time_s > 0]
    finite = [r.intensity for r in rows if math.isfinite(r.intensity) and r.intensity > 0]
    lo = min(finite, default=0.1) / 4
    hi = max(finite, default=100.0) * 8
    edge = hi / 2
    fig, ax = plt.subplots(figsize=(11, 6.5))
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    roofs = {"matrix": target.matrix_flops, "generic": target.generic_flops}
    for kind, rate in target.kind_rates.items():
        roofs.setdefault(f"{kind}", rate)
    for label, peak in roofs.items():
        ax.plot(xs, [min(peak, target.bus_bandwidth * x) for x in xs], lw=1.2,
                label=f"{label} roof ({format_rate(peak)})")
    kinds = sorted({r.kind for r in rows})
    markers = "osD^v<>pXh*"
    for i, kind in enumerate(kinds):
        pts = [_point(r, edge) for r in rows if r.kind == kind]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)], label=kind,
                   alpha=0.75)
    ax.axvline(edge, color="grey", ls=":", lw=0.8, label="no bus traffic (drawn here)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte over the bus)")
    ax.set_ylabel("attained FLOP/s (FLOPs / predicted layer time)")
    bus = target.bus_bandwidth / 1e9
    ax.set_title(f"{report.model} on {target.name} ({target.mode}, {target.dtype}): bus {bus:.3g} GB/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    slow = slowest_rows(report.rows, labels)
    drawn = [r for r in slow if r in rows]
    if slow:
        lines = [f"{row_tag(r)}: {r.total_time_s * 1e3:.3g} ms ({r.bound}-bound)"
                 + ("" if r in drawn else ", no FLOPs: not drawn") for r in slow]
        ax.text(1.01, 0.0, "slowest rows\n" + "\n".join(lines), transform=ax.transAxes, fontsize=8,
                va="bottom", ha="left", family="monospace",
                bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "0.6"})
    fig.tight_layout()
    if drawn:
        ax.scatter([_point(r, edge)[0] for r in drawn], [_point(r, edge)[1] for r in drawn], s=140,
                   facecolors="none", edgecolors="black", lw=1.0, zorder=4)
        _label(fig, ax, drawn, edge)
    return fig


def plot_roofline(report: Report, path: str | Path, labels: int = LABELLED_ROWS) -> Path:
    """Write the chart to ``path`` (.png, .svg or .pdf)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise HairlabError(f"--plot {path}: use a .png (or .svg/.pdf) file name")
    fig = roofline_figure(report, labels)
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
