"""End to end: ``hairlab run -m`` logs a sweep to the default store (``./mlflow.db``),
``hairlab ui`` serves it, and real headless Chromium opens the link ``hairlab ui`` prints:
the experiment's runs table lists the sweep's parent run and, expanded, every child run.
A screenshot goes to ``$HAIRLAB_TEST_OUTPUT`` (else the test's tmp dir).

Run on its own with ``pytest -m e2e tests/e2e/test_mlflow_ui.py`` (needs Debian's
``chromium``; the test is skipped without it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from chromium import browser, find_chromium  # noqa: E402
from mlflow_server import free_port, wait_healthy  # noqa: E402
from test_tracking_sweep import TOY, hairlab  # noqa: E402

NO_CHROMIUM = "needs Debian's chromium (apt-get install -y chromium)"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_chromium() is None, reason=NO_CHROMIUM)]

LRS = ("0.1", "0.2", "0.3")


def test_mlflow_ui_lists_the_sweep_in_chromium(tmp_path: Path) -> None:
    out_dir = Path(os.environ.get("HAIRLAB_TEST_OUTPUT") or tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    res = hairlab(["-m", TOY, "tracking.experiment=ui_check", f"optimizer.lr={','.join(LRS)}"], work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert (work / "mlflow.db").is_file()

    port = free_port()
    log = tmp_path / "ui.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with log.open("wb") as out:
        ui = subprocess.Popen([sys.executable, "-m", "hairlab", "ui", "--port", str(port)], cwd=work,
                              stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", ui, log, timeout=240)
        printed = log.read_text()
        assert f"MLflow UI: http://localhost:{port}" in printed
        link = re.search(r"newest experiment's runs: (\S+)", printed)
        assert link, printed
        parent_name = "sweep optimizer.lr=" + ",".join(LRS)
        children = [f"optimizer.lr={lr}" for lr in LRS]

        with browser(tmp_path / "chromium-profile") as page:
            page.call("Page.navigate", url=link.group(1))
            text = "document.body ? document.body.innerText : ''"
            # the training-runs table of the experiment, with the sweep's parent run
            page.wait_for(f"({text}).includes({json.dumps(parent_name)})", timeout=180)
            # children are nested under the parent; expand it the way a user would
            page.wait_for("""(() => {
                const b = document.querySelector('button[data-component-id*="runnamecellrenderer" i]');
                if (b) { b.click(); return true; } return false; })()""", timeout=60)
            checks = " && ".join(f"({text}).includes({json.dumps(name)})" for name in children)
            try:
                page.wait_for(checks, timeout=60)
            finally:
                shot = page.screenshot(out_dir / "mlflow-ui-sweep.png")
            body = page.evaluate(text)
        assert all(name in body for name in [parent_name, *children])
        assert f"{len(children) + 1} matching runs" in body
        assert shot.stat().st_size > 10_000
    finally:
        ui.send_signal(signal.SIGTERM)  # hairlab ui stops its server's whole process group
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ui.kill()
            ui.wait()
    deadline = time.time() + 20
    while time.time() < deadline and _answers(port):
        time.sleep(0.5)
    assert not _answers(port), "the MLflow server outlived `hairlab ui`"


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
            return True
    except OSError:
        return False
