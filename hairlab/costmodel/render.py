"""Render a cost report: rich table, CSV, JSON, markdown, and the comparison with a reference."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from hairlab.costmodel.engine import APPENDIX_COLUMNS, EXTRA_COLUMNS, REPORT_COLUMNS, Report, assumptions

FORMATS = ("table", "csv", "json", "markdown")
_TIME = ("transfer_time_s", "compute_time_s", "total_time_s", "measured_s")
_MB = ("in_map_MB", "out_map_MB", "param_MB")
_TEXT = ("layer_name", "module", "kind", "unit", "bound")
_COUNTS = ("ops", "flops", "macs")
#: Column headers in the table and markdown (the unit named; CSV and JSON use the field names).
HEADERS = {"flops": "FLOPs", "macs": "MACs", "predicted_over_measured": "pred/meas"}


def fmt_value(col: str, value: Any) -> str:
    """Display a cell the way the appendix prints it."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if col in _MB:
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    if col in _COUNTS:
        return f"{value:.3g}" if value >= 1e8 else f"{value:.0f}"
    if col in _TIME:
        if value == 0:
            return "0"
        return f"{value:.6f}" if value >= 1e-4 else f"{value:.2E}"
    if col == "predicted_over_measured":
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "inf"
    return str(value)


def header(col: str) -> str:
    """A column's display header: the unit for counts (``FLOPs``, ``MACs``), shorter time names."""
    return HEADERS.get(col, col.replace("_time_s", "_s"))


def columns(report: Report) -> list[str]:
    cols = ["index", *REPORT_COLUMNS, *EXTRA_COLUMNS]
    if report.measured is not None:
        cols += ["measured_s", "predicted_over_measured"]
    return cols


def _records(report: Report) -> list[dict[str, Any]]:
    return report.as_dict()["layers"]


def to_json(report: Report) -> str:
    def clean(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None  # JSON has no infinity (e.g. the intensity of a layer moving no bytes)
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return obj

    return json.dumps(clean(report.as_dict()), indent=1)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    cols = [*columns(report), "intensity", "params"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in _records(report):
        writer.writerow(rec)
    return buf.getvalue()


def _totals_lines(report: Report) -> list[str]:
    t = report.totals
    lines = [
        f"latency {t['latency_s']:.6f} s per batch of {int(t['batch_size'])} "
        f"({t['latency_per_image_s']:.6f} s per image, {t['images_per_s']:.1f} images/s)",
        f"transfer {t['transfer_s']:.6f} s, compute {t['compute_s']:.6f} s, bus traffic {t['bus_MB']:.3f} MB",
        f"params {int(t['params']):,}, FLOPs {int(t['flops']):,}, MACs {int(t['macs']):,}, "
        f"rows {int(t['rows'])}",
    ]
    if report.measurement:
        m = report.measurement
        ratio = t["latency_s"] / m["total_s"] if m["total_s"] else float("nan")
        lines.append(
            f"measured {m['total_s']:.6f} s (best of {m['repeats']}, {m['clock']}, {m['threads']} thread(s); "
            f"median {m['total_median_s']:.6f} s, wall median {m['wall_median_s']:.6f} s; "
            f"load average {_load(m['loadavg'])}); predicted/measured {ratio:.2f}")
    return lines


def _load(load: Any) -> str:
    return "/".join(f"{x:.2f}" for x in load) if load else "?"


def to_markdown(report: Report) -> str:
    cols = columns(report)
    out = [f"# {report.model} on {report.target.name} ({report.target.mode})", "",
           f"Input {list(report.input_shape)}; {report.target.description}.", "",
           "**Assumptions**", "", *[f"- {line}" for line in assumptions(report.target)], ""]
    out.append("| " + " | ".join(header(c) for c in cols) + " |")
    out.append("|" + "---|" * len(cols))
    for rec in _records(report):
        out.append("| " + " | ".join(fmt_value(c, rec.get(c)) for c in cols) + " |")
    out += ["", "**Totals**", ""] + [f"- {line}" for line in _totals_lines(report)]
    out += ["", "**Where the time goes**", ""] + [f"- {line}" for line in report.summary]
    return "\n".join(out) + "\n"


def print_table(report: Report, console: Any) -> None:
    from rich.table import Table

    cols = columns(report)
    table = Table(title=f"{report.model} on {report.target.name} ({report.target.mode})",
                  caption=f"input {list(report.input_shape)}; {report.target.description}")
    for line in assumptions(report.target):
        console.print(f"[dim]assumes: {line}[/dim]")
    for c in cols:
        table.add_column(header(c), justify="left" if c in _TEXT else "right", overflow="fold")
    for rec in _records(report):
        style = "yellow" if rec.get("bound") == "memory" else None
        table.add_row(*[fmt_value(c, rec.get(c)) for c in cols], style=style)
    console.print(table)
    for line in _totals_lines(report):
        console.print(f"[bold]total[/bold] {line}")
    for line in report.summary:
        console.print(f"[bold]where the time goes[/bold]: {line}")
    for note in report.target.notes:
        console.print(f"[dim]note: {note}[/dim]")


def print_comparison(report: Report, pairs: list[dict[str, Any]], total_printed: str | None,
                     console: Any, title: str = "the reference table") -> int:
    """Side by side with the printed table; returns the number of cells that differ."""
    from rich.table import Table

    table = Table(title=f"{report.target.name} ({report.target.mode}) vs {title} "
                        "(computed / printed; red = differs beyond the printed precision)")
    table.add_column("row", justify="right")
    for c in APPENDIX_COLUMNS:
        table.add_column(c.replace("_time_s", "_s"), overflow="fold")
    bad = 0
    for item in pairs:
        cells = [str(item["row"])]
        for c in APPENDIX_COLUMNS:
            got, want, ok = item[c]
            bad += not ok
            text = f"{fmt_value(c, got)} / {want if want is not None else '-'}"
            cells.append(text if ok else f"[red]{text}[/red]")
        table.add_row(*cells)
    console.print(table)
    total = report.totals["latency_s"]
    console.print(f"total: computed {total:.6f} s, printed {total_printed or '?'} s; "
                  f"{bad} cell(s) differ in {len(pairs)} rows x {len(APPENDIX_COLUMNS)} columns")
    return bad
