"""``hairlab ui`` and ``hairlab compare``: look at what the tracking store holds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from hairlab.errors import HairlabError


def _store_uri(tracking_uri: str | None) -> str:
    """The store to read, refusing to create an empty SQLite database by looking at it."""
    from hairlab.tracking.store import resolve_uri, sqlite_path

    uri = resolve_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise HairlabError(
            f"no tracking database at {db}; run `hairlab run ...` here first, or pass "
            "--tracking-uri (or set $MLFLOW_TRACKING_URI) to point at your store"
        )
    return uri


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ui_command(host: str, port: int, uri: str) -> list[str]:
    """The ``mlflow server`` command line serving ``uri`` (artifacts beside a SQLite file)."""
    from hairlab.tracking.store import ARTIFACT_DIR, sqlite_path

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", host, "--port", str(port)]
    db = sqlite_path(uri)
    if db is not None:
        cmd += ["--artifacts-destination", str(db.parent.resolve() / ARTIFACT_DIR)]
    return cmd


def ui(host: str = "127.0.0.1", port: int = 5000, tracking_uri: str | None = None) -> None:
    """Start the MLflow UI on the configured store; Ctrl-C stops it."""
    uri = _store_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        typer.echo(f"The store is already an MLflow server: open {uri}")
        return
    if not _port_free(host, port):
        raise HairlabError(f"port {port} on {host} is in use; pass --port N (e.g. --port {port + 1})")
    cmd = ui_command(host, port, uri)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    address = f"http://{shown}:{port}"
    typer.echo(f"MLflow UI: {address}  (store: {uri}; Ctrl-C stops it)")
    newest = _newest_experiment_id(uri)
    if newest is not None:
        typer.echo(f"newest experiment's runs: {address}/#/experiments/{newest}/runs?{TRAINING_VIEW}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo("note: bound beyond this machine; anyone who can reach it can read and change runs")
    env = server_env()
    # The server runs under a guard (see serve_guarded) that stops it, workers and all, when
    # this process ends by any means: Ctrl-C, SIGTERM, a closed terminal (SIGHUP), SIGKILL.
    guard = [sys.executable, "-c", GUARD_CODE, str(os.getpid()), *cmd]
    old = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        proc = subprocess.Popen(guard, env=env, start_new_session=True)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            _stop_group(proc)
            return
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if code:
        raise HairlabError(f"the MLflow server exited with status {code} (command: {' '.join(cmd)})")


#: Warnings the MLflow server's workers print about their own dependencies, which a user cannot act
#: on (starlette's wsgi middleware, SQLAlchemy's loader strategies): kept out of `hairlab ui`'s output.
SERVER_WARNINGS = ("ignore::DeprecationWarning", "ignore:starlette.middleware.wsgi is deprecated")


def server_env() -> dict[str, str]:
    """The MLflow server's environment: no inherited run id, and no dependency deprecation noise
    (unless the user set PYTHONWARNINGS or HAIRLAB_DEBUG)."""
    from hairlab.hydra_app import debug_enabled

    env = dict(os.environ)
    env.pop("MLFLOW_RUN_ID", None)
    if "PYTHONWARNINGS" not in env and not debug_enabled():
        env["PYTHONWARNINGS"] = ",".join(SERVER_WARNINGS)
    return env


#: URL query that opens MLflow 3's "Model training" view rather than its GenAI pages.
TRAINING_VIEW = "workflowType=machine_learning"


#: Runs :func:`serve_guarded` as the leader of the server's process group: argv = parent pid, command.
GUARD_CODE = ("import sys; from hairlab.commands.tracking import serve_guarded; "
              "sys.exit(serve_guarded(int(sys.argv[1]), sys.argv[2:]))")
#: Seconds the server gets to stop after SIGTERM before its whole group is killed.
STOP_GRACE_S = 10.0


def serve_guarded(parent: int, cmd: list[str], poll_s: float = 0.5) -> int:
    """Run ``cmd`` (the MLflow server) and stop its whole process group when ``parent`` is gone.

    Why a guard: ``mlflow server`` starts uvicorn workers and job consumers; SIGTERM to the
    server alone leaves consumers behind, and nothing at all reaches them when ``hairlab ui``
    is SIGKILLed. The guard notices its parent's end (its parent pid changes, whatever killed
    it) or a signal, then terminates the server's own process group, and kills what is left.
    """
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    if os.getppid() != parent:
        return 1  # the parent died before we started
    proc = subprocess.Popen(cmd, start_new_session=True)
    code: int | None = None
    while code is None and not stop and os.getppid() == parent:
        try:
            code = proc.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            continue
    _kill_group(proc, grace=0.0 if code is not None else STOP_GRACE_S)
    return code if code is not None else 0


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``proc``'s process group, wait ``grace`` seconds for ``proc``, then SIGKILL the group."""
    if grace > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers (job consumers) never outlive the server
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S + 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _newest_experiment_id(uri: str) -> str | None:
    from hairlab.tracking import store

    try:
        return str(_pick_experiment(store.client(uri), None).experiment_id)
    except Exception:  # noqa: BLE001 - only a convenience link
        return None


def _pick_experiment(client: Any, name: str | None) -> Any:
    experiments = client.search_experiments()
    if name:
        for exp in experiments:
            if exp.name == name:
                return exp
        listed = ", ".join(sorted(e.name for e in experiments)) or "none"
        raise HairlabError(f"no MLflow experiment named '{name}'; experiments in this store: {listed}")
    candidates = [e for e in experiments if e.name != "Default"] or list(experiments)
    if not candidates:
        raise HairlabError("the store holds no experiments yet; run `hairlab run ...` first")

    def latest_run(exp: Any) -> int:
        page = client.search_runs([exp.experiment_id], max_results=1, order_by=["attributes.start_time DESC"])
        return page[0].info.start_time if page else 0

    return max(candidates, key=lambda e: (latest_run(e), e.creation_time or 0))


def compare(
    experiment: str | None = None,
    sort: str | None = None,
    fmt: str = "table",
    plot: Path | None = None,
    tracking_uri: str | None = None,
    group_seeds: bool = True,
    columns: str | None = None,
    pareto: list[str] | None = None,
    references: list[str] | None = None,
) -> None:
    """Print a table of an experiment's runs (sweep parents left out).

    Ghost runs (RUNNING, but their process is gone) are closed first, so the table tells the truth.
    The terminal table shows the params that vary, under short names, and drops the least needed
    metrics when the terminal is narrow; ``columns`` (``--columns``) picks the columns instead.
    """
    from hairlab.tracking import store, summary
    from hairlab.tracking.plots import CURVE_METRICS, overlay_curves

    if plot is not None:
        _check_plot_dir(plot)
    uri = _store_uri(tracking_uri)
    client = store.client(uri, write=False)
    exp = _pick_experiment(client, experiment)
    if store.writable(uri):
        from hairlab.tracking import reconcile
        from hairlab.tracking.settings import TrackingConfig

        reconcile.safely(client, [exp.experiment_id], stale_after_s=TrackingConfig().stale_after_s)
    runs = [r for r in summary.fetch_runs(client, [exp.experiment_id]) if not summary.is_parent(r)]
    if not runs:
        raise HairlabError(f"experiment '{exp.name}' has no runs yet")
    if sort:
        present = sorted({k for r in runs for k in r.data.metrics})
        if sort not in present:
            raise HairlabError(f"no run logged metric '{sort}'; metrics: {', '.join(present) or 'none'}")
    preferred = _swept_params(client, runs)
    if pareto:  # the non-dominated runs instead of the whole table (hairlab.search.front, H4)
        from hairlab.search.front import compare_front

        compare_front(client, exp, runs, pareto, fmt=fmt, plot=plot, references=references or (), preferred=preferred)
        return
    all_columns, rows = summary.table(runs, sort=sort, preferred_params=preferred)
    picked = summary.pick_columns(all_columns, columns) if columns else None
    if fmt == "table":
        best = summary.best_run(runs)
        title = f"{exp.name}: {len(rows)} runs" + (f", best {sort} first" if sort else "")
        if best is not None:
            title += f"; best by {best[1]}: {summary.run_label(best[0], runs)}"
        summary.print_table(all_columns, rows, title=title, selection=best[1] if best else sort, picked=picked)
    else:
        typer.echo(summary.render(picked or all_columns, rows, fmt), nl=False)
    if plot is not None:
        curves = summary.histories(client, runs, CURVE_METRICS)
        groups = summary.seed_groups(runs, preferred) if group_seeds else None
        try:
            paths = overlay_curves(curves, plot, groups=groups)
        except OSError as exc:
            raise HairlabError(f"cannot write plots to {plot}: {exc.strerror or exc}; pass --plot DIR "
                               "with a writable directory") from None
        if not paths:
            raise HairlabError(f"no curves to plot: the runs logged none of {', '.join(CURVE_METRICS)}")
        typer.echo(f"wrote {len(paths)} plot(s) to {plot}: {', '.join(p.name for p in paths)}", err=True)


def _check_plot_dir(plot: Path) -> None:
    """``--plot`` names a directory (created if missing): refuse a file, or a file on its way, up front."""
    target = plot.expanduser()
    for path in (target, *target.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == target else f"is inside {path}, which is a file"
                raise HairlabError(f"--plot {plot} {what}; pass a directory to write the PNGs into "
                                   "(e.g. --plot plots/, created if missing)")
            if not os.access(path, os.W_OK):
                raise HairlabError(f"--plot {plot}: {path} is read-only for this user; pass a writable directory")
            return


def _swept_params(client: Any, runs: list[Any]) -> list[str]:
    """Parameter names of the keys the runs' sweeps varied, first in the table."""
    keys: list[str] = []
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs} - {None}
    for parent_id in sorted(parents):
        try:
            parent = client.get_run(parent_id)
        except Exception:  # noqa: BLE001 - a deleted parent only costs the column order
            continue
        for key in parent.data.tags.get("hairlab.swept_keys", "").split(","):
            if key and key not in keys:
                keys.append(key)
    params = {k for r in runs for k in r.data.params}
    return [k if k in params else f"{k}.name" for k in keys if k in params or f"{k}.name" in params]
