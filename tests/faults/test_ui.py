"""``hairlab ui`` never leaves its ``mlflow server`` behind: not after Ctrl-C, SIGTERM, a
closed terminal (SIGHUP) or SIGKILL. A real server, real signals; afterwards the port is
free and no process started by it is left (found by a marker in their environment)."""

from __future__ import annotations

import signal
import socket
import urllib.request
import uuid
from pathlib import Path

import faultkit as fk
import pytest

MARKER = "HAIRLAB_UI_FAULT_TEST"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _marked(token: str) -> list[int]:
    """Pids of live processes whose environment carries ``MARKER=token`` (the ui and all it started)."""
    needle = f"{MARKER}={token}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
                if state != "Z":
                    pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
# SIGTERM and SIGINT take the same path in hairlab ui as SIGHUP (stop the guard); SIGKILL has none.
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_ui_server_dies_with_hairlab_ui(workdir: Path, reap: list[fk.Hairlab], sig: signal.Signals) -> None:
    from hairlab.tracking import store

    uri = fk.sqlite_uri(workdir)
    store.ensure_experiment(store.client(uri), "hairlab", uri)
    port, token = _free_port(), uuid.uuid4().hex
    ui = fk.start(["--port", str(port)], workdir, command="ui", env=fk.child_env(**{MARKER: token}))
    reap.append(ui)
    fk.wait_for(lambda: _healthy(port) or not ui.running(), 180, f"the MLflow UI on port {port}")
    assert ui.running(), ui.output()[-3000:]
    assert len(_marked(token)) >= 3, "hairlab ui, its guard and the server are running"
    # A closed terminal and a killed shell signal the ui process itself; so does `kill PID`.
    ui.proc.send_signal(sig)
    ui.wait(60)
    fk.wait_for(lambda: not _marked(token), 60, f"every process started by hairlab ui to exit after {sig.name}")
    assert fk.wait_for(lambda: _port_free(port), 10, f"port {port} to be free"), ui.output()[-3000:]
