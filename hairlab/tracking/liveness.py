"""Who owns a run, and whether that process still lives.

Every run hairlab creates carries the tags below; :mod:`hairlab.tracking.reconcile` reads
them to tell a ghost (a RUNNING run whose process died: ``kill -9``, OOM, power cut) from a
live run. A pid alone is not enough: pids are reused, so the process's start time (Linux
``/proc/<pid>/stat``) and the boot id are recorded with it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

HOST = "hairlab.host"
PID = "hairlab.pid"
PID_START = "hairlab.pid_start"
BOOT_ID = "hairlab.boot_id"
PID_NS = "hairlab.pid_ns"
HEARTBEAT = "hairlab.heartbeat"


def hostname() -> str:
    return socket.gethostname()


def boot_id() -> str | None:
    """This boot of the machine (Linux); a run of an earlier boot cannot be alive."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def pid_namespace() -> str | None:
    """This process's pid namespace (Linux): containers sharing a hostname do not share pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after "pid (comm)" (Linux); None when unknown or gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), None when unknown or gone."""
    fields = _stat(pid)
    # after "pid (comm)": state is field 3, starttime field 22, i.e. indexes 0 and 19 here
    return fields[19] if fields is not None and len(fields) > 19 else None


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """The liveness tags of a run owned by ``pid`` (this process by default)."""
    pid = os.getpid() if pid is None else pid
    tags = {HOST: hostname(), PID: str(pid), HEARTBEAT: heartbeat_value()}
    start = process_start(pid)
    if start is not None:
        tags[PID_START] = start
    boot = boot_id()
    if boot is not None:
        tags[BOOT_ID] = boot
    namespace = pid_namespace()
    if namespace is not None:
        tags[PID_NS] = namespace
    return tags


def heartbeat_value(now: float | None = None) -> str:
    return f"{time.time() if now is None else now:.0f}"


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True while ``pid`` runs and, when ``start`` is known, is the same process (not a reuse)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat(pid)
    if fields is not None and fields[:1] == ["Z"]:
        return False  # a zombie has finished; only its parent has not reaped it yet
    if start is not None and fields is not None and len(fields) > 19:
        return fields[19] == start
    return True


def owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process that owns a run with these tags still runs.

    None when it cannot be told from here: another host, or a run without liveness tags.
    """
    host = tags.get(HOST)
    if host is None or host != hostname():
        return None
    namespace = tags.get(PID_NS)
    if namespace is not None and pid_namespace() is not None and namespace != pid_namespace():
        return None  # another container with this hostname: its pids are not ours to look up
    boot = tags.get(BOOT_ID)
    if boot is not None and boot_id() is not None and boot != boot_id():
        return False  # the machine rebooted since
    try:
        pid = int(tags.get(PID, ""))
    except ValueError:
        return None
    return pid_alive(pid, tags.get(PID_START))


class Heartbeat:
    """Refreshes a run's ``hairlab.heartbeat`` tag every ``interval_s`` from a daemon thread.

    For runs without a batch writer of their own (a sweep's parent run); a job's run gets its
    heartbeat from :class:`~hairlab.tracking.mlflow_tracker.MLflowTracker`'s writer thread.
    """

    def __init__(self, client: Any, run_id: str, interval_s: float) -> None:
        self.client, self.run_id, self.interval_s = client, run_id, float(interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"hairlab-heartbeat-{run_id[:8]}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.client.set_tag(self.run_id, HEARTBEAT, heartbeat_value())
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
