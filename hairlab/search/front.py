"""The Pareto front of MLflow runs: computed, printed (``hairlab compare --pareto``), plotted, and
logged on a sweep's parent with the front's runs tagged ``hairlab.pareto=true``.

A run counts when it FINISHED without diverging and logged every objective's metric with a
finite value; the others are still listed in the table as not on the front. The objective
``metric: null`` is each run's own selection metric (tag ``hairlab.selection_metric``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hairlab.search.objective import Objective, parse
from hairlab.search.pareto import front as pareto_front

log = logging.getLogger(__name__)

#: The tag on every run of a computed front: ``true`` on the front, ``false`` off it.
TAG = "hairlab.pareto"
#: On the parent: the objectives the front was computed for, and its run ids.
OBJECTIVES_TAG = "hairlab.pareto_objectives"
FRONT_TAG = "hairlab.pareto_front"


@dataclass
class Front:
    objectives: list[Objective]
    runs: list[Any]
    rows: list[dict[str, Any]]
    front: list[int]
    keys: list[str]

    def on_front(self) -> list[Any]:
        return [self.runs[i] for i in self.front]


def _row(run: Any) -> dict[str, Any]:
    from hairlab.tracking import summary

    row: dict[str, Any] = dict(run.data.metrics)
    row["selection_metric"] = summary.selection_metric(run)
    if summary.outcome(run) != "FINISHED":  # failed, killed, running or diverged: never on the front
        row = {"selection_metric": row["selection_metric"]}
    return row


def compute(runs: Sequence[Any], objectives: Sequence[Objective], preferred: Sequence[str] = ()) -> Front:
    """The front of ``runs`` (sweep parents left out) for ``objectives``."""
    from hairlab.tracking import summary

    runs = [r for r in runs if not summary.is_parent(r)]
    rows = [_row(r) for r in runs]
    return Front(list(objectives), list(runs), rows, pareto_front(rows, objectives),
                 summary.key_params(runs, preferred))


def table(result: Front, *, front_only: bool = True) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the front (best first on the first objective), for summary.render/rich_table."""
    from hairlab.search.plot import label_of
    from hairlab.tracking import summary

    picked = result.front if front_only else list(range(len(result.runs)))
    names = [o.metric or "selection" for o in result.objectives]
    columns = ["run", *result.keys, *names, "pareto", "run_id"]
    rows = []
    for i in picked:
        run = result.runs[i]
        short = label_of(dict(run.data.params), result.keys, summary.run_label(run, result.runs))
        row: dict[str, Any] = {"run": short, "run_id": run.info.run_id,
                               "pareto": "yes" if i in result.front else "no"}
        row.update({k: run.data.params.get(k, "") for k in result.keys})
        for o, name in zip(result.objectives, names, strict=True):
            row[name] = o.value(result.rows[i])
        rows.append(row)
    first = result.objectives[0]
    rows.sort(key=lambda r: _sort_key(r[names[0]], first.direction))
    return columns, rows


def _sort_key(value: Any, direction: str) -> float:
    v = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan
    if math.isnan(v):
        return math.inf
    return -v if direction == "maximize" else v


def axes(objectives: Sequence[Objective]) -> tuple[Objective, Objective] | None:
    """(x = latency, y = accuracy) objectives when the pair can be charted, else None."""
    if len(objectives) != 2:
        return None
    latency = [o for o in objectives if o.metric and o.metric.startswith("hw/")]
    others = [o for o in objectives if o not in latency]
    if len(latency) != 1 or len(others) != 1:
        return None
    return latency[0], others[0]


def latency_label(metric: str, runs: Sequence[Any]) -> str:
    """``predicted latency on paper2012 (corrected, batch 1), ms`` from the runs' own parameters."""
    target = metric.split("/")[1]
    named = [r for r in runs if r.data.params.get("hardware.name") == target]
    if named:
        modes = sorted({r.data.params.get("hardware.mode") for r in named} - {None})
        batches = sorted({r.data.params.get("hardware.batch_size") for r in named} - {None})
        parts = ([f"mode {'/'.join(modes)}"] if modes else []) + [f"batch {'/'.join(batches) or '1'}"]
        details = ", ".join(parts)
    else:
        details = "the target's default options"
    what = metric.split("/")[-1].removesuffix("_s").replace("_", " ")
    return f"predicted {what} on {target} ({details}), ms per batch"


def chart(result: Front, references: Sequence[Any] = (), title: str = "") -> Any:
    """The accuracy-latency :class:`~hairlab.search.plot.Chart` of a front, or None for other objectives."""
    from hairlab.search.plot import Chart, Point, label_of
    from hairlab.tracking import summary

    pair = axes(result.objectives)
    if pair is None:
        return None
    xo, yo = pair
    measured_key = str(xo.metric).rsplit("/", 1)[0] + "/measured_s"

    def point(run: Any, row: dict[str, Any], label: str) -> Point | None:
        x, y = xo.value(row), yo.value(row)
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        m = row.get(measured_key)
        return Point(x, y, label, float(m) if isinstance(m, (int, float)) and math.isfinite(m) else None)

    points, front, index = [], [], 0
    for i, (run, row) in enumerate(zip(result.runs, result.rows, strict=True)):
        p = point(run, row, label_of(dict(run.data.params), result.keys, summary.run_label(run, result.runs)))
        if p is None:
            continue
        if i in result.front:
            front.append(index)
        points.append(p)
        index += 1
    refs = [p for r in references if (p := point(r, _row(r), f"{r.info.run_name or r.info.run_id[:8]}"))]
    ylabel = f"{yo.metric or 'selection metric'} (%)"
    return Chart(points, front, latency_label(str(xo.metric), list(result.runs) + list(references)), ylabel,
                 title or f"{len(points)} runs, {len(front)} on the front", refs)


def sweep_objectives(config: Any, runs: Sequence[Any]) -> list[Objective] | None:
    """The objectives a sweep's front is computed for: its ``objective`` when it has 2+ metrics,
    else accuracy (selection metric) against the composed target's latency when the runs log both."""
    node = config.get("objective") if hasattr(config, "get") else None
    try:
        objectives = parse(node)
    except Exception:  # noqa: BLE001 - checked at the sweep's start; never fail the summary
        objectives = []
    if len(objectives) >= 2:
        return objectives
    hardware = config.get("hardware") if hasattr(config, "get") else None
    name = hardware.get("name") if hardware is not None else None
    metric = f"hw/{name}/latency_s" if name else None
    if metric and any(metric in r.data.metrics for r in runs):
        return [Objective(None, "maximize"), Objective(metric, "minimize")]
    return None


def log_front(client: Any, parent_run_id: str, runs: Sequence[Any], objectives: Sequence[Objective],
              preferred: Sequence[str] = (), directory: Path | None = None) -> Front:
    """Tag the runs of the front ``hairlab.pareto=true`` (the others ``false``); log the table and
    the chart on the parent under ``pareto/``. Returns the front."""
    import tempfile

    from mlflow.entities import Metric, RunTag

    from hairlab.search.plot import draw
    from hairlab.tracking import store, summary

    result = compute(runs, objectives, preferred)
    on = {result.runs[i].info.run_id for i in result.front}
    for run in result.runs:
        value = "true" if run.info.run_id in on else "false"
        if run.data.tags.get(TAG) != value:
            run_id = run.info.run_id
            store.retrying(lambda: client.set_tag(run_id, TAG, value))  # noqa: B023 - called at once
    columns, rows = table(result)
    with tempfile.TemporaryDirectory(prefix="hairlab-pareto-") as tmp:
        out = Path(directory or tmp)
        out.mkdir(parents=True, exist_ok=True)
        for fmt, ext in (("markdown", "md"), ("csv", "csv"), ("json", "json")):
            (out / f"front.{ext}").write_text(summary.render(columns, rows, fmt))
        picture = chart(result)
        if picture is not None:
            try:
                draw(picture, out / "pareto.png")
            except Exception as exc:  # noqa: BLE001 - the table is logged whatever the plot does
                log.warning("Pareto plot failed: %s", exc)
        store.retrying(lambda: client.log_artifacts(parent_run_id, str(out), "pareto"))
    now = int(time.time() * 1000)
    store.retrying(lambda: client.log_batch(
        parent_run_id, metrics=[Metric("sweep/pareto_size", float(len(result.front)), now, 0)],
        tags=[RunTag(OBJECTIVES_TAG, " ".join(o.label() for o in result.objectives)),
              RunTag(FRONT_TAG, ",".join(sorted(on))[:8000])]))
    return result


def print_front(result: Front, title: str) -> None:
    """The front as a rich table on the terminal (unwrapped in a log, as every runs table)."""
    from hairlab.tracking import summary

    columns, rows = table(result)
    # the run label names the varying params in short form (w=0.5 k=3 r2=1 lr=0.1): it and the
    # objectives fit a terminal; --format csv|json|markdown has every column
    shown = ["run", *[c for c in columns if c not in ("run", "run_id", "pareto", *result.keys)]]
    summary.print_table(columns, rows, title=title, picked=shown)


def log_sweep_front(client: Any, parent_run_id: str, runs: Sequence[Any], config: Any,
                    preferred: Sequence[str] = ()) -> Front | None:
    """At a sweep's end (the sweep callback): the front of its runs, logged, tagged and printed.

    Computed for the sweep's ``objective`` when it has 2+ metrics, else for accuracy against the
    composed target's latency when the runs log both (grid sweeps too); nothing otherwise.
    Never raises: the front is a view of the sweep, not part of its outcome.
    """
    try:
        objectives = sweep_objectives(config, runs)
        if not objectives:
            return None
        result = log_front(client, parent_run_id, runs, objectives, preferred)
        if result.front:
            print_front(result, f"Pareto front ({' '.join(o.label() for o in objectives)}): "
                                f"{len(result.front)} of {len(result.runs)} runs, tagged {TAG}=true")
        return result
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("could not log the sweep's Pareto front: %s", exc)
        return None


def config_view(config: Any) -> dict[str, Any]:
    """What :func:`sweep_objectives` reads from a sweep's config, as plain values (kept by the
    sweep callback from its start, since its end may run without the config)."""
    from omegaconf import OmegaConf

    def select(key: str) -> Any:
        try:
            value = OmegaConf.select(config, key)
            return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except Exception:  # noqa: BLE001 - an unresolvable objective: no front, not a failed sweep
            return None

    return {"objective": select("objective"), "hardware": {"name": select("hardware.name")}}


def pareto_specs(values: Sequence[str]) -> list[Objective]:
    """``--pareto`` values (``METRIC:max``, space- or comma-separated) as objectives; 2+ needed."""
    from hairlab.errors import HairlabError

    items = [part.strip() for value in values for part in str(value).split(",") if part.strip()]
    try:
        objectives = parse(items)
    except HairlabError as exc:
        raise HairlabError(f"--pareto: {exc}") from None
    if len(objectives) < 2:
        raise HairlabError("--pareto needs two or more METRIC:max|min, e.g. --pareto val/acc:max "
                           "hw/paper2012/latency_s:min")
    return objectives


def find_references(client: Any, names: Sequence[str], experiment_ids: Sequence[str]) -> list[Any]:
    """Runs named by id or run name: this experiment first, then every experiment of the store."""
    from hairlab.errors import HairlabError
    from hairlab.tracking import summary

    found = []
    for name in names:
        run = None
        try:
            run = client.get_run(name)
        except Exception:  # noqa: BLE001 - not a run id: try it as a run name
            run = None
        if run is None:
            query = f"attributes.run_name = '{name}'"
            for ids in (list(experiment_ids), [e.experiment_id for e in client.search_experiments()]):
                matches = summary.fetch_runs(client, ids, query)
                if matches:
                    run = max(matches, key=lambda r: r.info.start_time or 0)
                    break
        if run is None:
            raise HairlabError(f"--reference {name}: no run with that id or name in this store; give a run id "
                               "or run name (`hairlab compare EXPERIMENT` lists them)")
        found.append(run)
    return found


def compare_front(client: Any, experiment: Any, runs: Sequence[Any], specs: Sequence[str], *, fmt: str,
                  plot: Path | None, references: Sequence[str] = (), preferred: Sequence[str] = ()) -> Front:
    """``hairlab compare EXPERIMENT --pareto ...``: print the front (or render it), draw it with ``--plot``."""
    import typer

    from hairlab.errors import HairlabError
    from hairlab.search.plot import draw
    from hairlab.tracking import summary

    objectives = pareto_specs(specs)
    present = {k for r in runs for k in r.data.metrics}
    for o in objectives:
        if o.metric is not None and o.metric not in present:
            raise HairlabError(f"--pareto {o.label()}: no run of '{experiment.name}' logged {o.metric}; metrics: "
                               f"{', '.join(sorted(present)) or 'none'}")
    result = compute(runs, objectives, preferred)
    if fmt == "table":
        print_front(result, f"{experiment.name}: Pareto front ({' '.join(o.label() for o in objectives)}), "
                            f"{len(result.front)} of {len(result.runs)} runs")
    else:
        columns, rows = table(result)
        typer.echo(summary.render(columns, rows, fmt), nl=False)
    if plot is not None:
        picture = chart(result, find_references(client, list(references), [experiment.experiment_id]),
                        title=f"{experiment.name}: {len(result.runs)} runs, {len(result.front)} on the front")
        if picture is None:
            raise HairlabError("--plot with --pareto draws an accuracy against a hw/<target>/latency_s objective; "
                               "give exactly those two, e.g. --pareto val/acc:max hw/paper2012/latency_s:min")
        try:
            path = draw(picture, Path(plot) / "pareto.png")
        except OSError as exc:
            raise HairlabError(f"cannot write the plot to {plot}: {exc.strerror or exc}; pass --plot DIR with a "
                               "writable directory") from None
        typer.echo(f"wrote {path}", err=True)
    return result
