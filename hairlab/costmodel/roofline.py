"""Roofline chart of a report: attainable = min(peak, bandwidth x arithmetic intensity).

Each row is a point at (ops per bus byte, ops / predicted time); one roof per compute unit
(matrix, generic, and any per-kind rate the target has). Rows that move no bytes over the
bus have infinite intensity and are drawn at the right edge.
"""

from __future__ import annotations

import math
from pathlib import Path

from hairlab.costmodel.engine import Report
from hairlab.errors import HairlabError


def plot_roofline(report: Report, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise HairlabError(f"--plot {path}: use a .png (or .svg/.pdf) file name")
    target = report.target
    rows = [r for r in report.rows if r.ops > 0 and r.total_time_s > 0]
    finite = [r.intensity for r in rows if math.isfinite(r.intensity) and r.intensity > 0]
    lo = min(finite, default=0.1) / 4
    hi = max(finite, default=100.0) * 8
    edge = hi / 2
    fig, ax = plt.subplots(figsize=(9, 6))
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    roofs = {"matrix": target.matrix_flops, "generic": target.generic_flops}
    for kind, rate in target.kind_rates.items():
        roofs.setdefault(f"{kind}", rate)
    for label, peak in roofs.items():
        ax.plot(xs, [min(peak, target.bus_bandwidth * x) for x in xs], lw=1.2,
                label=f"{label} roof ({peak / 1e9:.3g} G/s)")
    kinds = sorted({r.kind for r in rows})
    markers = "osD^v<>pXh*"
    for i, kind in enumerate(kinds):
        pts = [r for r in rows if r.kind == kind]
        ax.scatter([r.intensity if math.isfinite(r.intensity) else edge for r in pts],
                   [r.ops / r.total_time_s for r in pts], marker=markers[i % len(markers)], label=kind,
                   alpha=0.75)
    ax.axvline(edge, color="grey", ls=":", lw=0.8, label="no bus traffic (drawn here)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (ops per byte over the bus)")
    ax.set_ylabel("attained ops/s (ops / predicted layer time)")
    bus = target.bus_bandwidth / 1e9
    ax.set_title(f"{report.model} on {target.name} ({target.mode}): bus {bus:.3g} GB/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
