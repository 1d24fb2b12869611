"""The Hydra task function behind ``hairlab run``: one call per job.

It dispatches on ``cfg.task`` to a job function, hands it a tracker, and makes sure the
tracker is closed with the right status whatever happens, so no result is ever lost:
FINISHED, FAILED (with the error tagged and its traceback kept), or KILLED on Ctrl-C or
SIGTERM (:mod:`hairlab.tracking.interrupts`; the process then exits 130 / 143). Before the
run exists it checks the config, computes the job key and, with ``tracking.resume=true``,
decides whether the job is skipped, resumed or trained (:mod:`hairlab.tracking.resume`). A
diverged training (:class:`~hairlab.errors.TrainingDiverged`) is a result, not a crash: the
run is FINISHED and tagged ``diverged=true`` with ``diverged_step``.

Inside a tracked sweep (the MLflow sweep callback is active) a failing job is recorded and
the sweep goes on; the callback then reports every failure and exits non-zero. Outside one,
the error propagates as usual.

What a job returns is what its sweeper needs (:mod:`hairlab.search.objective`): with an
``objective`` configured, or a sweeper that reads returns (Optuna), the objective's float(s),
read from the job's result and the metrics it logged (``hw/<target>/*`` too); a failed or
diverged job returns the failed-trial value (NaN(s), ``None`` for Optuna's sweeper). A
skipped job (resume) returns the float(s) of the run it reuses. Without either, the job's
result dict, as before (Hydra's basic sweeper ignores it).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from hairlab.errors import HairlabError, TrainingDiverged
from hairlab.search import objective
from hairlab.tracking.rundir import register_resolvers

log = logging.getLogger(__name__)
# conf/config.yaml's output dirs use ${hairlab.unique:}; importing the task function (as
# launchers do in their workers too) makes it resolvable
register_resolvers()

#: ``cfg.task`` value -> "module:function" of the job, called as ``fn(cfg, tracker)``.
#: ``task=package.module:function`` runs any other importable job function.
TASKS: dict[str, str] = {
    "train": "hairlab.training.job:train_job",
    "profile": "hairlab.costmodel.profile:profile_job",
}


def resolve_task(name: str) -> Any:
    """The job function for ``cfg.task``."""
    target = TASKS.get(name)
    if target is None and ":" in name:
        target = name
    if target is None:
        raise HairlabError(
            f"unknown task '{name}'; choose task={' or task='.join(TASKS)} (or task=package.module:function)"
        )
    module, _, func = target.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        if target in TASKS.values():
            raise
        raise HairlabError(f"task '{name}': cannot import {func} from {module} ({exc})") from exc


def task_function(cfg: Any) -> Any:
    """Run one job of a (multi)run.

    Everything that can refuse the job (bad values, a checkpoint of another config) runs
    before its run is created, so a refused job leaves nothing in the store.
    """
    from hairlab.contract import check_config, check_data
    from hairlab.plugin_manager import get_host
    from hairlab.tracking import interrupts

    interrupts.install()  # SIGTERM/SIGINT close the run as KILLED (main thread of this process)
    host = get_host()
    check_config(cfg, host)  # every value checked before any run exists (issue 11)
    check_data(cfg, host)  # and the data they point at: found, or fetched now
    hydra_cfg = _hydra_config()
    objectives = objective.check(cfg, host, hydra_cfg)
    job = resolve_task(str(cfg.get("task", "train")))
    try:
        with interrupts.job():
            result = _run(job, cfg, host)
        return objective.job_return(objectives, result, optuna=objective.is_optuna(hydra_cfg))
    except interrupts.Interrupted as exc:
        # the run is closed (KILLED) by now: exit 130 / 143 without a traceback
        raise SystemExit(exc.exit_code) from None


def _hydra_config() -> Any:
    """The job's Hydra config (its sweeper), or None outside a Hydra app (a direct call)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


class _Recording:
    """The job's tracker, remembering the last value of every metric logged through it.

    The job's result dict holds its final metrics; the objective may name one it logged on
    the way (``hw/<target>/latency_s`` is logged at step 0), which this keeps.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.last: dict[str, float] = {}

    def log_metrics(self, metrics: Any, step: int) -> None:
        self.last.update({str(k): v for k, v in dict(metrics).items()})
        self._inner.log_metrics(metrics, step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _run(job: Any, cfg: Any, host: Any) -> Any:
    from hairlab.tracking.context import JobContext
    from hairlab.tracking.rundir import claim
    from hairlab.training.distributed import world_from_env

    ctx = JobContext.from_hydra()
    # a single run's directory is this run's alone (a sweep's jobs live in its claimed dir);
    # under torchrun the ranks share it, rank 0 holds it
    lock = None if ctx.multirun or not world_from_env().main else claim(ctx.job_dir, "run", "hydra.run.dir")
    try:
        return _tracked(job, cfg, host, prepare(cfg, ctx))
    finally:
        if lock is not None:
            lock.release()


def _tracked(job: Any, cfg: Any, host: Any, prepared: Prepared) -> Any:
    from hairlab.tracking import interrupts
    from hairlab.tracking.base import NullTracker
    from hairlab.tracking.factory import create_tracker
    from hairlab.training.distributed import world_from_env

    if prepared.result is not None:
        return prepared.result
    tracker: Any = NullTracker()
    in_sweep = False
    status = "FAILED"
    try:
        with interrupts.deferred():  # a signal during creation interrupts once the tracker exists
            # under torchrun every rank runs this job; rank 0 alone owns the run
            if world_from_env().main:
                tracker = create_tracker(cfg, prepared.tags, prepared.where)
            in_sweep = getattr(tracker, "sweep", None) is not None
        recording = _Recording(tracker)
        result = _call(job, cfg, recording, host)
        status = "FINISHED"
        if isinstance(result, dict):  # the objective may name a metric logged on the way
            return {**recording.last, **result}
        return result
    except KeyboardInterrupt as exc:
        status = "KILLED"
        _record(tracker, exc)
        raise
    except TrainingDiverged as exc:
        status = "FINISHED"
        tracker.set_tags({"diverged": "true", "diverged_step": str(exc.step)})
        _record(tracker, exc)
        if in_sweep:
            log.error("job diverged: %s", exc)
            return None
        raise
    except Exception as exc:
        _record(tracker, exc)
        if in_sweep:
            log.exception("job failed (recorded as FAILED; the sweep goes on)")
            return None
        raise
    finally:
        with interrupts.deferred():  # a signal now must not cut the run's ending
            tracker.close(status)
        if not in_sweep and status != "KILLED":  # a sweep's end says where all its runs are
            from hairlab.tracking.summary import announce

            announce(tracker, prepared.where, status)


def _call(job: Any, cfg: Any, tracker: Any, host: Any) -> Any:
    """``job(cfg, tracker, host)``, or ``job(cfg, tracker)`` for job functions without a host."""
    import inspect

    try:
        takes_host = len(inspect.signature(job).parameters) >= 3
    except (TypeError, ValueError):
        takes_host = False
    return job(cfg, tracker, host) if takes_host else job(cfg, tracker)


class Prepared:
    """What :func:`prepare` found: tags for the job's run, or the stored result of a skipped job,
    and the store it opened (reused for the run)."""

    def __init__(self, tags: dict[str, str], result: Any = None, where: Any = None) -> None:
        self.tags, self.result, self.where = tags, result, where


def prepare(cfg: Any, ctx: Any) -> Prepared:
    """The job's identity, resume decision and checkpoint check, before any run exists."""
    from omegaconf import OmegaConf, open_dict

    from hairlab.tracking import identity, resume
    from hairlab.tracking.factory import tracking_settings
    from hairlab.training import checkpoint as ckpt
    from hairlab.training.distributed import world_from_env

    settings = tracking_settings(cfg)
    (ctx.job_dir / resume.REUSED_FILE).unlink(missing_ok=True)  # left by an earlier sweep in this dir
    key, params = identity.job_key(cfg), identity.result_params(cfg)
    ckpt.identify(key, identity.code_version(), params)
    checkpoints = checkpoint_dir(cfg, ctx.job_dir)
    tags = {identity.TAG: key, resume.CHECKPOINT_DIR_TAG: str(checkpoints)}

    world = world_from_env()
    where = None
    if settings["backend"] == "mlflow" and world.main:  # the ranks of torchrun other than 0 own no run
        from hairlab.tracking import reconcile
        from hairlab.tracking.factory import locate

        where = locate(cfg, settings, ctx)
        stale = float(settings.get("stale_after_s", 600.0))
        if where.sweep is None:  # a sweep reconciles once, at its start
            reconcile.safely(where.client, [where.experiment_id], stale_after_s=stale)
        if settings.get("resume") and world.size > 1:
            log.warning("tracking.resume is ignored under torchrun (every rank must make the same decision)")
        elif settings.get("resume"):
            decision = resume.decide(where.client, where.experiment_id, key)
            if decision.finished is not None:
                return Prepared(tags, _reuse(where, ctx, decision.finished, key))
            if decision.checkpoint is not None and not OmegaConf.select(cfg, "trainer.resume"):
                with open_dict(cfg):
                    cfg.trainer.resume = str(decision.checkpoint)
                previous = decision.previous
                assert previous is not None  # a checkpoint is only ever found for a previous run
                tags[resume.RESUMED_TAG] = previous.info.run_id
                log.info("resuming job %s from %s (run %s was %s)", key[:12], decision.checkpoint,
                         previous.info.run_id, previous.info.status)

    requested = OmegaConf.select(cfg, "trainer.resume")
    if requested not in (None, "", False):
        found = ckpt.find(requested, checkpoints)
        if found is not None:
            allow = str(OmegaConf.select(cfg, "trainer.resume_mismatch", default="refuse")).lower() == "allow"
            ckpt.check_identity(found, key, params, allow=allow)
    return Prepared(tags, where=where)


def _reuse(where: Any, ctx: Any, run: Any, key: str) -> dict[str, Any]:
    """Skip a job whose key has a FINISHED run: link it to the sweep, return its result."""
    from hairlab.tracking import resume
    from hairlab.tracking.store import retrying

    resume.record_reuse(ctx.job_dir, run, key)
    if where.sweep is not None:
        try:
            retrying(lambda: where.client.set_tag(run.info.run_id, resume.REUSED_BY_TAG, where.sweep.parent_run_id))
        except Exception as exc:  # noqa: BLE001 - the record file still links it
            log.warning("could not tag the reused run %s: %s", run.info.run_id, exc)
    log.info("skipped: job key %s already has FINISHED run %s (%s)", key[:12], run.info.run_id, run.info.run_name)
    return resume.stored_result(run)  # with the run's selection_metric, the objective's default


def checkpoint_dir(cfg: Any, job_dir: Any) -> Any:
    """Where the job writes its checkpoints: ``trainer.checkpoint_dir``, else ``<job dir>/checkpoints``."""
    from pathlib import Path

    from omegaconf import OmegaConf

    configured = OmegaConf.select(cfg, "trainer.checkpoint_dir")
    return Path(str(configured)) if configured else Path(job_dir) / "checkpoints"


def _record(tracker: Any, exc: BaseException) -> None:
    """Tag the run with the error, when the backend can."""
    record = getattr(tracker, "record_error", None)
    if record is None:
        return
    try:
        record(exc)
    except Exception as err:  # noqa: BLE001 - never hide the original error
        log.warning("could not record the error on the run: %s", err)
