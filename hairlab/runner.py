"""The Hydra task function behind ``hairlab run``: one call per job.

It dispatches on ``cfg.task`` to a job function, hands it a tracker, and makes sure the
tracker is closed with the right status whatever happens, so no result is ever lost:
FINISHED, FAILED (with the error tagged and its traceback kept), or KILLED on Ctrl-C. A
diverged training (:class:`~hairlab.errors.TrainingDiverged`) is a result, not a crash: the
run is FINISHED and tagged ``diverged=true`` with ``diverged_step``.

Inside a tracked sweep (the MLflow sweep callback is active) a failing job is recorded and
the sweep goes on; the callback then reports every failure and exits non-zero. Outside one,
the error propagates as usual.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from hairlab.errors import HairlabError, TrainingDiverged

log = logging.getLogger(__name__)

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
    """Run one job of a (multi)run."""
    from hairlab.tracking.base import NullTracker
    from hairlab.tracking.factory import create_tracker
    from hairlab.training.distributed import world_from_env

    job = resolve_task(str(cfg.get("task", "train")))
    # under torchrun every rank runs this job; rank 0 alone owns the run
    tracker = create_tracker(cfg) if world_from_env().main else NullTracker()
    in_sweep = getattr(tracker, "sweep", None) is not None
    status = "FAILED"
    try:
        result = job(cfg, tracker)
        status = "FINISHED"
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
        tracker.close(status)


def _record(tracker: Any, exc: BaseException) -> None:
    """Tag the run with the error, when the backend can."""
    record = getattr(tracker, "record_error", None)
    if record is None:
        return
    try:
        record(exc)
    except Exception as err:  # noqa: BLE001 - never hide the original error
        log.warning("could not record the error on the run: %s", err)
