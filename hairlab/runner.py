"""The Hydra task function behind ``hairlab run``: one call per job.

It dispatches on ``cfg.task`` to a job function, hands it a tracker, and makes sure the
tracker is closed with the right status whatever happens, so no result is ever lost.
"""

from __future__ import annotations

import importlib
from typing import Any

from hairlab.errors import HairlabError

#: ``cfg.task`` value -> "module:function" of the job, called as ``fn(cfg, tracker)``.
TASKS: dict[str, str] = {
    "train": "hairlab.training.job:train_job",
    "profile": "hairlab.costmodel.profile:profile_job",
}


def resolve_task(name: str) -> Any:
    """The job function for ``cfg.task``."""
    try:
        target = TASKS[name]
    except KeyError:
        raise HairlabError(f"unknown task '{name}'; choose task={' or task='.join(TASKS)}") from None
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def task_function(cfg: Any) -> Any:
    """Run one job of a (multi)run."""
    from hydra.core.hydra_config import HydraConfig

    from hairlab.tracking.base import LocalTracker

    job = resolve_task(str(cfg.get("task", "train")))
    tracker = LocalTracker(HydraConfig.get().runtime.output_dir)
    status = "FAILED"
    try:
        result = job(cfg, tracker)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.close(status)
