"""No ghosts: RUNNING runs whose process is gone are closed as KILLED, with the reason.

A run killed with ``kill -9``, by the OOM killer or a power cut never ends itself. hairlab
reconciles an experiment whenever it touches it (a run or sweep start, ``hairlab compare``):

- a run owned by a process on **this host** (``hairlab.host``) is a ghost when that pid no
  longer runs, or now belongs to another process (start time differs), or the machine
  rebooted since (boot id differs): ``hairlab.reconciled=process gone``;
- a run owned by **another host** is a ghost only when its ``hairlab.heartbeat`` (refreshed
  every ``tracking.heartbeat_s`` while the run lives) is older than ``stale_after_s``:
  ``hairlab.reconciled=heartbeat stale``. A live run elsewhere keeps its heartbeat fresh, so
  it is never touched (clocks must agree to well within ``stale_after_s``);
- a run without liveness tags (written by something else) is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from hairlab.tracking import liveness

log = logging.getLogger(__name__)

TAG = "hairlab.reconciled"
PROCESS_GONE = "process gone"
HEARTBEAT_STALE = "heartbeat stale"


def ghost_reason(tags: dict[str, str], *, stale_after_s: float, now: float | None = None) -> str | None:
    """Why a RUNNING run with these tags is a ghost, or None when it may be alive."""
    alive = liveness.owner_alive(tags)
    if alive is False:
        return PROCESS_GONE
    if alive is True:
        return None
    if liveness.HOST not in tags:
        return None  # not a run hairlab can judge
    try:
        beat = float(tags.get(liveness.HEARTBEAT, ""))
    except ValueError:
        return None
    now = time.time() if now is None else now
    return HEARTBEAT_STALE if now - beat > stale_after_s else None


def reconcile(client: Any, experiment_ids: Iterable[str], *, stale_after_s: float = 600.0) -> list[str]:
    """Mark the ghost RUNNING runs of these experiments KILLED; returns their run ids."""
    from hairlab.tracking.store import retrying

    ids = [str(e) for e in experiment_ids]
    if not ids:
        return []
    runs = retrying(lambda: _running(client, ids))
    closed: list[str] = []
    for run in runs:
        tags = dict(run.data.tags)
        reason = ghost_reason(tags, stale_after_s=stale_after_s)
        if reason is None:
            continue
        try:
            end_ms = int(float(tags.get(liveness.HEARTBEAT, "")) * 1000)
        except ValueError:
            end_ms = None
        run_id = run.info.run_id
        # the owner is gone, so the run can no longer change: re-read it, in case it ended
        # between the search and the liveness check
        if reason == PROCESS_GONE and retrying(lambda: client.get_run(run_id)).info.status != "RUNNING":  # noqa: B023
            continue
        try:
            retrying(lambda: client.set_tag(run_id, TAG, reason))  # noqa: B023 - called at once
            retrying(lambda: client.set_terminated(run_id, status="KILLED", end_time=end_ms))  # noqa: B023
        except Exception as exc:  # noqa: BLE001 - one run we cannot fix must not stop the command
            log.warning("could not reconcile run %s: %s", run_id, exc)
            continue
        log.warning("run %s (%s) was left RUNNING: marked KILLED (%s)", run_id, run.info.run_name, reason)
        closed.append(run_id)
    return closed


def _running(client: Any, experiment_ids: list[str]) -> list[Any]:
    from hairlab.tracking.summary import fetch_runs

    return fetch_runs(client, experiment_ids, "attributes.status = 'RUNNING'")


def safely(client: Any, experiment_ids: Iterable[str], *, stale_after_s: float = 600.0) -> list[str]:
    """:func:`reconcile` for callers where it is housekeeping: a failure only warns."""
    try:
        return reconcile(client, experiment_ids, stale_after_s=stale_after_s)
    except Exception as exc:  # noqa: BLE001 - housekeeping must not stop a run or a sweep
        log.warning("could not reconcile RUNNING runs: %s", exc)
        return []
