"""Resuming: what a job does when the store already knows its job key.

With ``tracking.resume=true`` a job first looks for runs of its own ``hairlab.job_key`` in
the experiment (decided in the job itself, so it works the same under every launcher):

- a FINISHED run exists: the job is **skipped**. No run is created; the stored result is
  returned, and a record (:data:`REUSED_FILE` in the job directory) tells the sweep's parent
  which run stands for this job. The reused run is tagged ``hairlab.reused_by``;
- else the newest KILLED/FAILED run of the key with a checkpoint on disk: the job is
  **resumed**, training on from that checkpoint in a new run tagged ``hairlab.resumed_run``;
- else it is **trained** from scratch.

Without the switch nothing here runs: a re-run trains every job again, as it always did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hairlab.tracking import identity

REUSED_FILE = "hairlab_reused.json"
RESUMED_TAG = "hairlab.resumed_run"
REUSED_BY_TAG = "hairlab.reused_by"
CHECKPOINT_DIR_TAG = "hairlab.checkpoint_dir"


@dataclass
class Decision:
    """What a resuming job does."""

    finished: Any | None = None  # the FINISHED run to reuse
    previous: Any | None = None  # the KILLED/FAILED run to continue
    checkpoint: Path | None = None  # ... from this checkpoint


def runs_of_key(client: Any, experiment_id: str, key: str) -> list[Any]:
    """Every run of ``key`` in the experiment (every page), newest first."""
    from hairlab.tracking.store import retrying
    from hairlab.tracking.summary import fetch_runs

    query = f"tags.`{identity.TAG}` = '{key}'"
    return list(reversed(retrying(lambda: fetch_runs(client, [experiment_id], query))))


def checkpoint_of(run: Any) -> Path | None:
    """The last checkpoint a run left on disk (through its checkpoint-dir or job-dir tag)."""
    from hairlab.training.checkpoint import LAST

    tags = run.data.tags
    for directory in (tags.get(CHECKPOINT_DIR_TAG), tags.get("hairlab.job_dir")):
        if not directory:
            continue
        for candidate in (Path(directory) / LAST, Path(directory) / "checkpoints" / LAST):
            if candidate.is_file():
                return candidate
    return None


def decide(client: Any, experiment_id: str, key: str) -> Decision:
    """Skip, resume or train: see the module docstring."""
    runs = runs_of_key(client, experiment_id, key)
    for run in runs:
        if run.info.status == "FINISHED":
            return Decision(finished=run)
    for run in runs:
        if run.info.status in ("KILLED", "FAILED"):
            found = checkpoint_of(run)
            if found is not None:
                return Decision(previous=run, checkpoint=found)
    return Decision()


def stored_result(run: Any) -> dict[str, Any]:
    """What the job returns when it reuses ``run``: its final metrics and how it ended."""
    result: dict[str, Any] = {"status": "skipped", "run_id": run.info.run_id}
    if str(run.data.tags.get("diverged", "")).lower() == "true":
        result["diverged_step"] = run.data.tags.get("diverged_step")
    for key in ("selection_metric", "stop_reason"):  # as train_job returns them (engine tags)
        if f"hairlab.{key}" in run.data.tags:
            result[key] = run.data.tags[f"hairlab.{key}"]
    result.update(run.data.metrics)
    return result


def record_reuse(job_dir: Path, run: Any, key: str) -> Path:
    """Leave the record the sweep's parent reads to link and count the reused run."""
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / REUSED_FILE
    path.write_text(json.dumps({"run_id": run.info.run_id, "job_key": key, "run_name": run.info.run_name}))
    return path


def reused_runs(sweep_dir: Path) -> list[str]:
    """Run ids the jobs of a sweep reused instead of training, one per skipped job (from their records).

    Two jobs of one key in a sweep both reuse the same run: its id is listed twice.
    """
    ids: list[str] = []
    if not sweep_dir.is_dir():
        return ids
    for path in sorted(sweep_dir.rglob(REUSED_FILE)):
        try:
            ids.append(str(json.loads(path.read_text())["run_id"]))
        except (OSError, ValueError, KeyError):
            continue
    return ids
