"""Tables of runs (key params, final metrics, outcome), shared by sweep summaries and
``hairlab compare``."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, Literal

#: Final metrics shown when present, in this order; ``hw/<target>/latency_s`` follow.
KEY_METRICS = (
    "val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss", "throughput/img_s",
    "time/epoch_s", "model/params",
)
#: Metrics where a larger value is better (``--sort`` puts the best first).
HIGHER_IS_BETTER = ("acc", "throughput", "img_s")
MAX_PARAM_COLUMNS = 8
PARENT_TAG = "hairlab.sweep_parent"
#: Parameters that differ between runs but say nothing about the setting compared.
_NOISE_PARAMS = ("dataset.root", "trainer.output_dir", "data.load_s")


def outcome(run: Any) -> str:
    """FINISHED, FAILED, KILLED, RUNNING, or DIVERGED (a ``diverged=true`` tag wins)."""
    tags = run.data.tags
    if str(tags.get("diverged", "")).lower() == "true":
        return "DIVERGED"
    return str(run.info.status)


def is_parent(run: Any) -> bool:
    return run.data.tags.get(PARENT_TAG) == "true"


def fetch_runs(client: Any, experiment_ids: Sequence[str], filter_string: str = "") -> list[Any]:
    """All runs matching ``filter_string``, every page, oldest first."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=1000,
            order_by=["attributes.start_time ASC"], page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def run_label(run: Any, runs: Sequence[Any]) -> str:
    """The run's name, with a short id when two runs share it."""
    name = run.info.run_name or run.info.run_id[:8]
    if sum(1 for r in runs if r.info.run_name == run.info.run_name) > 1:
        name = f"{name} [{run.info.run_id[:6]}]"
    return name


def seed_groups(runs: Sequence[Any], preferred: Sequence[str] = ()) -> dict[str, list[str]]:
    """Line label -> run labels: runs whose key parameters differ only in ``seed`` share a line.

    The label names the sweep's own keys (``preferred``) when there are any, else every
    parameter that varies.
    """
    varying = key_params(runs, preferred)
    keys = [k for k in preferred if k in varying and k != "seed"] or [k for k in varying if k != "seed"]
    groups: dict[str, list[str]] = {}
    for run in runs:
        label = ", ".join(f"{k}={run.data.params.get(k, '-')}" for k in keys) or "all runs"
        groups.setdefault(label, []).append(run_label(run, runs))
    return groups


def key_params(runs: Sequence[Any], preferred: Sequence[str] = ()) -> list[str]:
    """Parameters whose values differ between the runs (the ones being compared).

    ``preferred`` (the sweep's own keys) come first. Other parameters only some runs have
    (Adam's betas beside SGD's momentum) are left out: the optimizer's name says it.
    """
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run.data.params if k not in keys)
    varying = [
        k for k in sorted(keys)
        if len({r.data.params.get(k) for r in runs}) > 1 and k not in _NOISE_PARAMS
    ]
    everywhere = [k for k in varying if all(k in r.data.params for r in runs)]
    ordered = [k for k in preferred if k in varying] + [k for k in everywhere if k not in preferred]
    return ordered[:MAX_PARAM_COLUMNS]


def key_metrics(runs: Sequence[Any]) -> list[str]:
    present = {k for r in runs for k in r.data.metrics}
    out = [m for m in KEY_METRICS if m in present]
    out += sorted(m for m in present if m.startswith("hw/") and m.endswith("/latency_s"))
    return out


def higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER)


def table(runs: Sequence[Any], *, sort: str | None = None, preferred_params: Sequence[str] = ()) -> tuple[
    list[str], list[dict[str, Any]]
]:
    """Columns and rows: run, status, key params, final metrics (best first by ``sort``)."""
    params = key_params(runs, preferred_params)
    metrics = key_metrics(runs)
    if sort and sort not in metrics:
        metrics.append(sort)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run_label(run, runs), "status": outcome(run)}
        for p in params:
            row[p] = run.data.params.get(p, "")
        for m in metrics:
            row[m] = run.data.metrics.get(m)
        if row["status"] == "DIVERGED":
            row["status"] = f"DIVERGED@{run.data.tags.get('diverged_step', '?')}"
        error = run.data.tags.get("hairlab.error")
        row["note"] = error.splitlines()[0][:80] if error else ""
        row["run_id"] = run.info.run_id
        rows.append(row)
    if sort:
        # NaN/inf (a diverged run) is never best: finite values ranked, then non-finite, then missing.
        present = [r for r in rows if _finite(r.get(sort))]
        broken = [r for r in rows if r.get(sort) is not None and not _finite(r.get(sort))]
        missing = [r for r in rows if r.get(sort) is None]
        present.sort(key=lambda r: r[sort], reverse=higher_is_better(sort))
        rows = present + broken + missing
    columns = ["run", "status", *params, *metrics, "note", "run_id"]
    if not any(r["note"] for r in rows):
        columns.remove("note")
    return columns, rows


def _finite(value: Any) -> bool:
    """A usable number: not NaN, not infinite, and not MLflow's SQL stand-in for infinity (float max)."""
    return isinstance(value, (int, float)) and math.isfinite(value) and abs(value) < sys.float_info.max


def _json_value(value: Any) -> Any:
    """JSON has no NaN or Infinity: non-finite numbers become the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def fmt_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def render(columns: Sequence[str], rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """``csv``, ``json`` or ``markdown`` text of a table (``table`` is drawn by rich)."""
    if fmt == "json":
        return json.dumps([{c: _json_value(r.get(c)) for c in columns} for r in rows], indent=1, allow_nan=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([fmt_cell(r.get(c)) for c in columns])
        return buf.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        for r in rows:
            lines.append("| " + " | ".join(fmt_cell(r.get(c)).replace("|", "\\|") for c in columns) + " |")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def rich_table(columns: Sequence[str], rows: Sequence[dict[str, Any]], title: str = "") -> Any:
    from rich.table import Table

    tbl = Table(title=title or None)
    for c in columns:
        textual = c in ("run", "status", "note", "run_id")
        numeric = not textual and any(isinstance(r.get(c), float) for r in rows)
        justify: Literal["right", "left"] = "right" if numeric else "left"
        tbl.add_column(c, justify=justify, no_wrap=numeric or c == "status", overflow="fold")
    styles = {"FINISHED": "green", "FAILED": "red", "KILLED": "yellow", "RUNNING": "cyan"}
    for r in rows:
        status = str(r.get("status", ""))
        style = "magenta" if status.startswith("DIVERGED") else styles.get(status, "")
        tbl.add_row(*[fmt_cell(r.get(c)) for c in columns], style=style or None)
    return tbl


Curves = dict[str, dict[str, list[tuple[int, float]]]]


def histories(client: Any, runs: Sequence[Any], metrics: Sequence[str]) -> Curves:
    """``label -> metric -> [(step, value)]`` for overlaid curves."""
    out: Curves = {}
    for run in runs:
        per: dict[str, list[tuple[int, float]]] = {}
        for m in metrics:
            if m in run.data.metrics:
                per[m] = [(h.step, h.value) for h in client.get_metric_history(run.info.run_id, m)]
        out[run_label(run, runs)] = per
    return out
