"""Tables of runs (key params, final metrics, outcome), shared by sweep summaries and
``hairlab compare``."""

from __future__ import annotations

import csv
import io
import json
import math
import re
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
#: The metric a training run is judged by (``val/acc`` with a validation split, else ``test/acc``).
SELECTION_TAG = "hairlab.selection_metric"
#: Older runs carry no :data:`SELECTION_TAG`: these are tried in order.
SELECTION_FALLBACK = ("val/acc", "test/acc")
#: Parameters that differ between runs but say nothing about the setting compared.
_NOISE_PARAMS = ("dataset.root", "trainer.output_dir", "data.load_s")
#: Runs logged before params were the config only carry the data's facts as ``data.*`` params.
_NOISE_PREFIXES = ("data.",)


def outcome(run: Any) -> str:
    """FINISHED, FAILED, KILLED, RUNNING, or DIVERGED (a ``diverged=true`` tag wins)."""
    tags = run.data.tags
    if str(tags.get("diverged", "")).lower() == "true":
        return "DIVERGED"
    return str(run.info.status)


def is_parent(run: Any) -> bool:
    return run.data.tags.get(PARENT_TAG) == "true"


def selection_metric(run: Any) -> str | None:
    """The metric that picks ``run``'s best: its tag, else ``val/acc``, else ``test/acc`` it logged.

    The tag is what the engine evaluated on (a validation split when there is one); the fallbacks
    read stores written before the tag existed, where ``val/*`` could mean the test split.
    """
    tag = run.data.tags.get(SELECTION_TAG)
    if tag:
        return str(tag)
    metrics = run.data.metrics
    return next((m for m in SELECTION_FALLBACK if m in metrics), None)


def best_run(runs: Sequence[Any]) -> tuple[Any, str] | None:
    """The run with the best finite selection metric, and that metric's name; None when no run has one.

    Runs are compared on the metric most of them select on (a sweep's jobs share one), so a run
    judged on the test split is never ranked against one judged on a validation split.
    """
    named = [(r, selection_metric(r)) for r in runs if outcome(r) == "FINISHED"]
    counts: dict[str, int] = {}
    for _, metric in named:
        if metric:
            counts[metric] = counts.get(metric, 0) + 1
    if not counts:
        return None
    metric = max(counts, key=lambda m: (counts[m], m == "val/acc"))
    scored = [(r.data.metrics[metric], r) for r, m in named if m == metric and _finite(r.data.metrics.get(metric))]
    if not scored:
        return None
    pick = max if higher_is_better(metric) else min
    return pick(scored, key=lambda pair: pair[0])[1], metric


def run_path(experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of one run, relative to the UI's address."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def where_line(uri: str, experiment: str, experiment_id: str, run_id: str, what: str = "run") -> str:
    """One line saying where a run's results are: its UI page, and how to open the UI.

    A server store is a URL already; a local store (SQLite) is opened with ``hairlab ui``,
    which serves it at http://localhost:5000 by default.
    """
    import os

    page = run_path(experiment_id, run_id)
    if uri.startswith(("http://", "https://")):
        return f"{what} {run_id} in experiment '{experiment}': {uri.rstrip('/')}/{page}"
    default = f"sqlite:///{os.path.abspath('mlflow.db')}"
    ui = "hairlab ui" if uri in (default, os.environ.get("MLFLOW_TRACKING_URI")) else f"hairlab ui --tracking-uri {uri}"
    return f"{what} {run_id} in experiment '{experiment}': `{ui}`, then http://localhost:5000/{page}"


def announce(tracker: Any, where: Any, status: str) -> None:
    """Print where a single run's results are, once it is closed (MLflow: its UI page; local: its files)."""
    run_id = getattr(tracker, "run_id", None)
    if run_id is not None and where is not None:
        try:
            name = str(where.client.get_experiment(where.experiment_id).name)
        except Exception:  # noqa: BLE001 - the id still finds it
            name = str(where.experiment_id)
        line = where_line(where.uri, name, str(where.experiment_id), str(run_id))
    elif getattr(tracker, "directory", None) is not None:
        line = f"run files (tracking=local): {tracker.directory}"
    else:
        return
    print(f"[hairlab] {line} ({status})", flush=True)


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
        if len({r.data.params.get(k) for r in runs}) > 1 and k not in _NOISE_PARAMS and not k.startswith(_NOISE_PREFIXES)
    ]
    everywhere = [k for k in varying if all(k in r.data.params for r in runs)]
    ordered = [k for k in preferred if k in varying] + [k for k in everywhere if k not in preferred]
    ordered = [k for k in ordered if k in preferred or not _implied(k, ordered, runs)]
    return ordered[:MAX_PARAM_COLUMNS]


def _implied(key: str, keys: Sequence[str], runs: Sequence[Any]) -> bool:
    """True when ``key`` (``model.stages.3.width``) only differs because its group's choice
    (``model.name``, also shown) does: a model sweep must not list every key of each preset."""
    group = key.split(".", 1)[0]
    chooser = f"{group}.name"
    if key == chooser or chooser not in keys:
        return False
    seen: dict[Any, Any] = {}
    for run in runs:
        choice, value = run.data.params.get(chooser), run.data.params.get(key)
        if seen.setdefault(choice, value) != value:
            return False  # varies within one choice: a setting of its own
    return True


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


#: Columns that may wrap onto several lines in a narrow terminal (each keeps at least this width).
_FOLDING = {"run": 14, "note": 12}
_METRIC_LABELS = {"throughput/img_s": "img/s", "time/epoch_s": "epoch_s", "model/params": "params"}


def short_names(columns: Sequence[str]) -> dict[str, str]:
    """Column -> its header in a terminal table: shorter, and still unique among ``columns``.

    Parameters lose their group when the rest says it (``optimizer.lr`` -> ``lr``, ``optimizer.name``
    -> ``optimizer``, ``model.stages.1.activation`` -> ``stages.1.activation``); a few metrics have
    a short form.
    Any clash falls back to the full name.
    """
    out = {c: _short(c) for c in columns}
    counts: dict[str, int] = {}
    for label in out.values():
        counts[label] = counts.get(label, 0) + 1
    return {c: label if label == c or (counts[label] == 1 and label not in columns) else c
            for c, label in out.items()}


def _short(column: str) -> str:
    if column in _METRIC_LABELS:
        return _METRIC_LABELS[column]
    if column.startswith("hw/") and column.endswith("/latency_s"):
        return column[len("hw/"):-len("/latency_s")] + " s"
    if "/" in column or "." not in column:
        return column
    if column.endswith(".name"):
        return column[: -len(".name")]
    return column.split(".", 1)[1]  # the group is the reader's context: optimizer.lr -> lr


def display_order(columns: Sequence[str], selection: str | None = None) -> list[str]:
    """``columns`` by how much a reader needs them: name, status, params, the selection metric
    and its loss, the note, then the other metrics (dropped first when the terminal is narrow)."""
    metrics = [c for c in columns if c in KEY_METRICS or c.startswith("hw/")]
    params = [c for c in columns if c not in metrics and c not in ("run", "status", "note", "run_id")]
    first = [m for m in (selection, selection.replace("/acc", "/loss") if selection else None) if m in metrics]
    rest = [m for m in metrics if m not in first]
    order = ["run", "status", *params, *first, "note", *rest]
    return [c for c in order if c in columns]


def _cell_width(column: str, label: str, rows: Sequence[dict[str, Any]], width: int) -> int:
    """What a column needs; the run name may wrap (onto two lines, about, when it is long)."""
    cells = [_display(column, fmt_cell(r.get(column))) for r in rows]
    natural = max([len(label), *(max((len(w) for w in c.split()), default=0) if column == "run" else len(c)
                                 for c in cells)])
    if column == "run":
        longest = max((len(c) for c in cells), default=0)
        return max(natural, min(longest, max(_FOLDING["run"], width // 4)))
    return min(natural, max(_FOLDING[column], len(label))) if column in _FOLDING else natural


#: A comma that starts the next ``key=value`` of a run name made of overrides.
_NEXT_OVERRIDE = re.compile(r",(?=[+~]?[\w./@-]+=)")


def _display(column: str, text: str) -> str:
    """A run name of overrides wraps between them (``model=a optimizer.lr=0.1``: pasteable as is)."""
    return _NEXT_OVERRIDE.sub(" ", text) if column == "run" else text


def fit_columns(columns: Sequence[str], rows: Sequence[dict[str, Any]], width: int,
                labels: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """The columns (in ``columns``' order, most needed first) whose table fits ``width``
    characters, and the ones left out. ``run`` and ``status`` always stay."""
    labels = labels or {c: c for c in columns}
    shown: list[str] = []
    used = 1  # the table's left border
    hidden: list[str] = []
    for c in columns:
        need = _cell_width(c, labels.get(c, c), rows, width) + 3  # padding either side, one border
        if c in ("run", "status") or (not hidden and used + need <= width):  # in order of need: no gaps
            shown.append(c)
            used += need
        else:
            hidden.append(c)
    return shown, hidden


def pick_columns(columns: Sequence[str], wanted: str) -> list[str]:
    """``--columns run,lr,val/acc`` (names, short names or fnmatch patterns) -> table columns."""
    import fnmatch

    from hairlab.errors import HairlabError

    labels = short_names(columns)
    out: list[str] = []
    for item in (w.strip() for w in wanted.split(",")):
        if not item:
            continue
        found = [c for c in columns if fnmatch.fnmatchcase(c, item) or fnmatch.fnmatchcase(labels[c], item)]
        if not found:
            raise HairlabError(f"--columns {item}: no such column; columns: {', '.join(columns)}")
        out.extend(c for c in found if c not in out)
    return out


def rich_table(columns: Sequence[str], rows: Sequence[dict[str, Any]], title: str = "",
               labels: dict[str, str] | None = None) -> Any:
    from rich.table import Table

    tbl = Table(title=title or None)
    for c in columns:
        textual = c in ("run", "status", "note", "run_id")
        numeric = not textual and any(isinstance(r.get(c), float) for r in rows)
        justify: Literal["right", "left"] = "right" if numeric else "left"
        tbl.add_column((labels or {}).get(c, c), justify=justify, no_wrap=c not in _FOLDING, overflow="fold",
                       min_width=_FOLDING.get(c))
    styles = {"FINISHED": "green", "FAILED": "red", "KILLED": "yellow", "RUNNING": "cyan"}
    for r in rows:
        status = str(r.get("status", ""))
        style = "magenta" if status.startswith("DIVERGED") else styles.get(status, "")
        tbl.add_row(*[_display(c, fmt_cell(r.get(c))) for c in columns], style=style or None)
    return tbl


def print_table(columns: list[str], rows: list[dict[str, Any]], *, title: str = "", selection: str | None = None,
                picked: list[str] | None = None, console: Any = None,
                hint: str = "--columns picks, --format csv shows all") -> None:
    """A runs table that fits the terminal: short headers, the least needed columns left out
    (and named) when it is narrow, ``picked`` columns exactly when given."""
    from hairlab.training.progress import make_console

    console = console or make_console()
    for row in rows:
        row["note"] = str(row.get("note", ""))[:40]
    labels = short_names(columns)
    hidden: list[str] = []
    if picked:
        shown = picked
    else:
        order = display_order([c for c in columns if c != "run_id"], selection)
        shown, hidden = fit_columns(order, rows, console.width, labels)
    console.print(rich_table(shown, rows, title=title, labels=labels))
    renamed = [f"{labels[c]}={c}" for c in shown if labels.get(c, c) != c and not c.endswith(".name")]
    if renamed:
        console.print(f"columns: {', '.join(renamed)}", style="dim", highlight=False)
    if hidden:
        console.print(f"not shown (terminal width {console.width}): {', '.join(hidden)}; {hint}",
                      style="dim", highlight=False)


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
