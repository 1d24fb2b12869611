"""The Hydra callback that turns a multirun into one MLflow parent run with child jobs.

``on_multirun_start`` runs once, in the launching process, before any job: it creates the
SQLite database (and its schema), the experiment and the parent run there, so parallel
jobs never race MLflow's first migration or ``set_experiment`` (mlflow#979, #10334), and
writes :data:`~hairlab.tracking.context.SWEEP_FILE` into the sweep directory for the jobs.
``on_multirun_end`` gives the parent a summary (table artifacts and overlaid curves), prints
a short report, and exits non-zero when a job failed or diverged. Hydra skips
``on_multirun_end`` when the sweep itself aborts (Ctrl-C, a job that could not start); an
``atexit`` hook then closes the parent as KILLED or FAILED so it never stays RUNNING.

On SIGINT/SIGTERM (:mod:`hairlab.tracking.interrupts`) the launching process first makes
sure the jobs running in other processes (joblib/loky workers, submitit tasks) got the
signal and waits, up to :data:`CLOSE_WAIT_S`, for their runs to close before it exits; a
job run whose process died without closing it is reconciled to KILLED (``process gone``).
The parent run carries the liveness tags and a heartbeat like every job's run.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

#: Curves drawn on the parent run, one PNG each (like the paper's Figures 3 and 4), when logged.
SWEEP_CURVES = ("train/loss", "val/loss", "test/loss", "train/acc", "val/acc", "test/acc")
#: The parent's metric: the best job's selection metric (``val/acc``, else ``test/acc``); the tags
#: :data:`BEST_METRIC_TAG` and :data:`BEST_RUN_TAG` say which metric (so which split) and which run.
BEST_METRIC = "sweep/best_acc"
BEST_METRIC_TAG = "hairlab.best_metric"
BEST_RUN_TAG = "hairlab.best_run"
#: Seconds an interrupted sweep waits for its jobs in other processes to close their runs.
CLOSE_WAIT_S = 60.0
#: A job still RUNNING this long after the launching process was interrupted gets the signal
#: from it (a terminal's Ctrl-C reaches the whole process group; ``kill <pid>`` does not).
FORWARD_AFTER_S = 2.0


def swept_keys(config: Any) -> list[str]:
    """Keys a multirun sweeps over: command-line sweeps and ``hydra.sweeper.params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    keys: list[str] = []
    task: Any = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    overrides = [str(o) for o in task]
    try:
        for ov in OverridesParser.create().parse_overrides(overrides):
            if ov.is_sweep_override():
                keys.append(ov.key_or_group)
    except Exception:  # noqa: BLE001 - Hydra reports bad overrides itself
        pass
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if params:
        keys.extend(str(k) for k in params if str(k) not in keys)
    return keys


class SweepCallback(Callback):
    """Creates the parent run before a sweep's jobs and summarises it after them."""

    def __init__(self, **_: Any) -> None:
        self.state: Any = None
        self._started = 0.0
        self._done = False
        self._heartbeat: Any = None
        self._stale_after_s = 600.0
        self._lock: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Launchers pickle the callbacks into their workers: leave the process-bound parts behind."""
        return {**self.__dict__, "_lock": None, "_heartbeat": None}

    # -- Hydra hooks ---------------------------------------------------------------------
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from hairlab.errors import HairlabError
        from hairlab.tracking import interrupts
        from hairlab.tracking.factory import tracking_settings
        from hairlab.training.distributed import world_from_env

        interrupts.install()
        if not world_from_env().main:
            return  # under torchrun, rank 0 alone owns the sweep's parent run
        try:
            _check_sweep(config)
        except HairlabError as exc:  # bad values: refused before the parent run or any job exists
            print(f"hairlab: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        _announce_job_count(config)
        if tracking_settings(config)["backend"] != "mlflow":
            return
        try:
            with interrupts.deferred():
                self._start(config)
        except BaseException as exc:
            # Hydra turns a callback's exception into a warning; a sweep that cannot be
            # tracked must stop before spending hours on jobs.
            from hairlab.errors import HairlabError

            message = str(exc) if isinstance(exc, HairlabError) else f"{type(exc).__name__}: {exc}"
            print(f"hairlab: cannot set up MLflow tracking for this sweep: {message}", file=sys.stderr)
            raise SystemExit(2) from exc

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from hairlab.tracking import interrupts

        if self.state is None or self._done:
            return
        with interrupts.deferred():  # a signal now would leave the parent RUNNING half-summarised
            failed = self._finish()
        if failed:
            raise SystemExit(1)

    # -- work ----------------------------------------------------------------------------
    def _start(self, config: Any) -> None:
        from omegaconf import OmegaConf

        from hairlab.tracking import interrupts, liveness, reconcile, rundir, store
        from hairlab.tracking.context import SweepState, base_tags, run_name, user_tags
        from hairlab.tracking.factory import tracking_settings

        settings = tracking_settings(config)
        runtime: Any = OmegaConf.select(config, "hydra.runtime") or {}
        base_dir = Path(str(runtime.get("cwd") or Path.cwd()))
        choices: Any = OmegaConf.to_container(runtime.choices, resolve=True) if runtime.get("choices") else {}
        uri = store.resolve_uri(settings.get("uri"), base_dir)
        store.check_server(uri)
        client = store.client(uri)
        name = store.experiment_name(config, choices)
        experiment_id = store.ensure_experiment(client, name, uri)
        self._stale_after_s = float(settings.get("stale_after_s", 600.0))
        reconcile.safely(client, [experiment_id], stale_after_s=self._stale_after_s)
        keys = swept_keys(config)
        sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        overrides = [str(o) for o in config.hydra.overrides.task]
        tags = {**user_tags(config.get("tags")), **base_tags(base_dir)}  # the user's tags label the sweep too
        tags.update({
            "hairlab.sweep_parent": "true",
            "hairlab.sweep_id": sweep_id,
            "hairlab.overrides": ",".join(overrides),
            "hairlab.swept_keys": ",".join(keys),
            **liveness.owner_tags(),
        })
        if settings.get("resume"):
            tags["hairlab.resume"] = "true"
        parent_name = f"sweep {run_name(overrides, keys)}" if keys else f"sweep {sweep_id}"
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_absolute():
            sweep_dir = (base_dir / sweep_dir).resolve()
        self._lock = rundir.claim(sweep_dir, "sweep", "hydra.sweep.dir")  # held until the sweep ends
        tags["hairlab.sweep_dir"] = str(sweep_dir)
        run = store.retrying(lambda: client.create_run(experiment_id, run_name=parent_name, tags=tags))
        self.state = SweepState(
            uri=uri, experiment=name, experiment_id=experiment_id, parent_run_id=run.info.run_id,
            sweep_id=sweep_id, sweep_dir=str(sweep_dir), swept_keys=keys,
        )
        self.state.save()
        self.fail_on_diverged = bool(settings.get("fail_on_diverged", True))
        from hairlab.search.front import config_view

        self.front_config = config_view(config)  # the Pareto front's objectives, for _finish
        self._started = time.time()
        self._done = False
        atexit.register(self._abort)
        interrupts.add_hook(self._on_interrupt)
        self._heartbeat = liveness.Heartbeat(client, run.info.run_id, float(settings.get("heartbeat_s", 30.0)))
        log.info("MLflow sweep %s: parent run %s in experiment '%s' (%s)",
                 sweep_id, run.info.run_id, name, uri)

    def _on_interrupt(self, signum: int) -> None:
        """Before the launching process exits: the jobs in other processes close their runs first."""
        if self.state is not None and not self._done:
            self._wait_for_jobs(signum)

    def _wait_for_jobs(self, signum: int | None) -> None:
        """Signal (once) this sweep's live jobs in other processes; wait until their runs closed.

        Then any child run still RUNNING whose process is gone is reconciled to KILLED.
        """
        from hairlab.tracking import liveness, reconcile, store

        state = self.state
        client = store.client(state.uri)
        began = time.monotonic()
        deadline = began + CLOSE_WAIT_S
        signalled: set[int] = set()
        while True:
            running = _running_children(client, state)
            waiting = []
            for run in running:
                tags = run.data.tags
                if tags.get(liveness.PID) == str(os.getpid()) or liveness.owner_alive(tags) is not True:
                    continue  # this process's own job closes as the interrupt unwinds it
                pid = int(tags[liveness.PID])
                waiting.append(pid)
                if signum is not None and pid not in signalled and time.monotonic() - began >= FORWARD_AFTER_S:
                    signalled.add(pid)
                    with contextlib.suppress(OSError):
                        os.kill(pid, signum)
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        reconcile.safely(client, [state.experiment_id], stale_after_s=self._stale_after_s)

    def _restore(self) -> None:
        from hairlab.tracking import interrupts

        self._done = True
        atexit.unregister(self._abort)
        interrupts.remove_hook(self._on_interrupt)
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _abort(self) -> None:
        """At exit without ``on_multirun_end``: close the parent as KILLED or FAILED."""
        from hairlab.tracking import interrupts

        if self._done or self.state is None:
            return
        status = "KILLED" if interrupts.received() is not None else "FAILED"
        try:
            with interrupts.deferred():
                self._wait_for_jobs(None)
                self._finish(parent_status=status)
        except Exception as exc:  # noqa: BLE001 - best effort at interpreter exit
            print(f"hairlab: could not close sweep parent run: {exc}", file=sys.stderr)

    def _finish(self, parent_status: str | None = None) -> bool:
        """Summarise the children on the parent; True when any job failed (or diverged)."""
        from hairlab.tracking import resume, store, summary

        state = self.state
        self._restore()
        client = store.client(state.uri)
        children = store.retrying(lambda: summary.fetch_runs(
            client, [state.experiment_id], f"tags.mlflow.parentRunId = '{state.parent_run_id}'"
        ))
        resumed = sum(1 for r in children if r.data.tags.get(resume.RESUMED_TAG))
        trained = len(children) - resumed
        skipped = resume.reused_runs(Path(state.sweep_dir))  # one per skipped job
        reused = _fetch(client, list(dict.fromkeys(skipped)))
        if reused:  # the runs that stand for the jobs this sweep skipped
            links = ",".join(r.info.run_id for r in reused)
            store.retrying(lambda: client.set_tag(state.parent_run_id, "hairlab.reused_runs", links[:8000]))
        everything = children + reused
        columns, rows = summary.table(everything, preferred_params=_param_names(everything, state.swept_keys))
        counts: dict[str, int] = {}
        for row in rows:
            key = str(row["status"]).split("@")[0]
            counts[key] = counts.get(key, 0) + 1
        launched = _launched_jobs(Path(state.sweep_dir), self._started)
        missing = max(0, launched - len(children) - len(skipped))
        bad = [r for r in rows if r["status"] not in ("FINISHED",) and
               (self.fail_on_diverged or not str(r["status"]).startswith("DIVERGED"))]
        failed = bool(bad) or missing > 0
        status = parent_status or ("FAILED" if failed else "FINISHED")

        with tempfile.TemporaryDirectory(prefix="hairlab-sweep-") as tmp:
            out = Path(tmp)
            for fmt, ext in (("markdown", "md"), ("csv", "csv"), ("json", "json")):
                (out / f"summary.{ext}").write_text(summary.render(columns, rows, fmt))
            _upload(client, state.parent_run_id, out, "summary")
            try:
                from hairlab.tracking.plots import overlay_curves

                curves = overlay_curves(summary.histories(client, everything, SWEEP_CURVES), out / "curves",
                                        SWEEP_CURVES)
                if curves:
                    _upload(client, state.parent_run_id, out / "curves", "curves")
            except Exception as exc:  # noqa: BLE001 - curves are a convenience; the table is logged
                log.warning("sweep curves failed: %s", exc)
            md = summary.render([c for c in columns if c != "run_id"], rows, "markdown")
            text = ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))
            if missing:
                text += f", {missing} without a run"
            from mlflow.entities import Metric, RunTag

            now = int(time.time() * 1000)
            metrics = [Metric("sweep/jobs", float(launched or len(everything)), now, 0),
                       Metric("sweep/failed", float(len(bad) + missing), now, 0),
                       Metric("sweep/trained", float(trained), now, 0),
                       Metric("sweep/resumed", float(resumed), now, 0),
                       Metric("sweep/skipped", float(len(skipped)), now, 0)]
            tags = [RunTag("hairlab.sweep_status", text or "no jobs"),
                    RunTag("mlflow.note.content", f"Sweep {state.sweep_id}: {text}\n\n{md}"[:8000])]
            best = summary.best_run(everything)
            if best is not None:  # selected on the jobs' own selection metric: val when they have it
                run, metric = best
                metrics.append(Metric(BEST_METRIC, float(run.data.metrics[metric]), now, 0))
                tags += [RunTag(BEST_METRIC_TAG, metric), RunTag(BEST_RUN_TAG, run.info.run_id)]
            store.retrying(lambda: client.log_batch(state.parent_run_id, metrics=metrics, tags=tags))
        from hairlab.search.front import log_sweep_front

        log_sweep_front(client, state.parent_run_id, everything, getattr(self, "front_config", {}),
                        _param_names(everything, state.swept_keys))  # prints, plots, tags the front (H4)
        store.retrying(lambda: client.set_terminated(state.parent_run_id, status=status))
        jobs = f"{trained} trained, {resumed} resumed, {len(skipped)} skipped"
        _report(state, columns, rows, f"{jobs} ({text or 'no jobs'})", bad, missing, status, best)
        return failed


def _check_sweep(config: Any) -> None:
    """The checks of issue 11: the sweep's config and (basic sweeper) every job's, before the parent exists."""
    from hairlab.contract import check_config, check_sweep
    from hairlab.plugin_manager import get_host
    from hairlab.search.objective import check as check_objective

    host = get_host()
    check_config(config, host)
    check_objective(config, host, config.get("hydra"))  # objective vs sweeper, before any trial
    check_sweep(config, host)


def _fetch(client: Any, run_ids: list[str]) -> list[Any]:
    """The runs this sweep's skipped jobs reused (a deleted one is left out, with a warning)."""
    from hairlab.tracking import store

    runs = []
    for run_id in run_ids:
        try:
            runs.append(store.retrying(lambda: client.get_run(run_id)))  # noqa: B023 - called at once
        except Exception as exc:  # noqa: BLE001 - a deleted run: counted as missing
            log.warning("reused run %s: %s", run_id, exc)
    return runs


def _running_children(client: Any, state: Any) -> list[Any]:
    from hairlab.tracking import store, summary

    query = f"tags.mlflow.parentRunId = '{state.parent_run_id}' and attributes.status = 'RUNNING'"
    return store.retrying(lambda: summary.fetch_runs(client, [state.experiment_id], query))


def _param_names(children: list[Any], swept: list[str]) -> list[str]:
    """Swept override keys as parameter names (``optimizer`` -> ``optimizer.name``)."""
    names: list[str] = []
    params = {k for r in children for k in r.data.params}
    for key in swept:
        for cand in (key, f"{key}.name"):
            if cand in params:
                names.append(cand)
                break
    return names


def _launched_jobs(sweep_dir: Path, since: float) -> int:
    """Job directories Hydra created under the sweep for this sweep (each has a ``.hydra/``).

    Directories older than the sweep (a reused ``hydra.sweep.dir``) do not count.
    """
    if not sweep_dir.is_dir():
        return 0
    return sum(1 for p in sweep_dir.rglob(".hydra")
               if p.is_dir() and p.parent != sweep_dir and p.stat().st_mtime >= since - 1)


def _upload(client: Any, run_id: str, directory: Path, artifact_path: str) -> None:
    from hairlab.tracking import store

    store.retrying(lambda: client.log_artifacts(run_id, str(directory), artifact_path))


def _report(state: Any, columns: list[str], rows: list[dict[str, Any]], text: str, bad: list[dict[str, Any]],
            missing: int, status: str, best: tuple[Any, str] | None = None) -> None:
    """The end of a sweep: its jobs' table (swept params, final metrics), the best job, where it all is."""
    from hairlab.tracking import summary

    print(f"[hairlab] sweep {state.sweep_id}: {text or 'no jobs'}", flush=True)
    if rows:
        try:
            summary.print_table(columns, [dict(r) for r in rows], title=f"sweep {state.sweep_id}: {len(rows)} jobs",
                                selection=best[1] if best else None,
                                hint=f"`hairlab compare {state.experiment} --columns ...` picks")
        except Exception as exc:  # noqa: BLE001 - the table is a convenience; the summary is logged
            log.warning("sweep table: %s", exc)
    if best is not None:
        run, metric = best
        print(f"[hairlab] best by {metric}: {run.info.run_name} ({metric} {summary.fmt_cell(run.data.metrics[metric])})")
    where = summary.where_line(state.uri, state.experiment, state.experiment_id, state.parent_run_id, "parent run")
    print(f"[hairlab] {where} ({status})")
    for row in bad[:10]:
        note = f": {row['note']}" if row.get("note") else ""
        print(f"[hairlab]   {row['status']}: {row['run']}{note}")
    if missing:
        print(f"[hairlab]   {missing} job(s) left no run (see the job logs under {state.sweep_dir})")
    if bad or missing:
        print(f"[hairlab] `hairlab compare {state.experiment}` shows the whole table")


def _announce_job_count(config: Any) -> None:
    """Tell the jobs how many there are (``job 3/12`` in their progress) through the environment,
    which launchers' worker processes (joblib, submitit) inherit."""
    from hairlab.contract.preflight import sweep_jobs
    from hairlab.training.progress import ENV_SWEEP_JOBS

    try:
        jobs = sweep_jobs(config)
        total = len(jobs) if jobs is not None else config.hydra.sweeper.get("n_trials")
    except Exception:  # noqa: BLE001 - a job count is a convenience
        total = None
    if isinstance(total, int) and total > 0:
        os.environ[ENV_SWEEP_JOBS] = str(total)
    else:
        os.environ.pop(ENV_SWEEP_JOBS, None)
