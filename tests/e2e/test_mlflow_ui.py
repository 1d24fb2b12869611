"""End to end: a sweep logged by ``hairlab run -m`` to a real ``mlflow server``, opened in
real headless Chromium; the experiment page lists the sweep's parent run and, expanded,
every child run. A screenshot goes to ``$HAIRLAB_TEST_OUTPUT`` (else the test's tmp dir).

Run on its own with ``pytest -m e2e tests/e2e/test_mlflow_ui.py`` (needs Debian's
``chromium``; the test is skipped without it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from chromium import browser, find_chromium  # noqa: E402
from mlflow_server import mlflow_server  # noqa: E402
from test_tracking_sweep import TOY, hairlab  # noqa: E402

from hairlab.commands.tracking import TRAINING_VIEW  # noqa: E402

NO_CHROMIUM = "needs Debian's chromium (apt-get install -y chromium)"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_chromium() is None, reason=NO_CHROMIUM)]

LRS = ("0.1", "0.2", "0.3")


def test_mlflow_ui_lists_the_sweep_in_chromium(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    out_dir = Path(os.environ.get("HAIRLAB_TEST_OUTPUT") or tmp_path)
    with mlflow_server(tmp_path / "server") as url:
        work = tmp_path / "work"
        work.mkdir()
        res = hairlab(["-m", TOY, f"tracking.uri={url}", "tracking.experiment=ui_check",
                       f"optimizer.lr={','.join(LRS)}"], work)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        client = MlflowClient(url)
        exp = client.get_experiment_by_name("ui_check")
        parent_name = "sweep optimizer.lr=" + ",".join(LRS)
        children = [f"optimizer.lr={lr}" for lr in LRS]

        with browser(tmp_path / "chromium-profile") as page:
            # the "Model training" view (MLflow 3 opens on its GenAI pages otherwise),
            # the same link `hairlab ui` prints
            page.call("Page.navigate", url=f"{url}/#/experiments/{exp.experiment_id}/runs?{TRAINING_VIEW}")
            text = "document.body ? document.body.innerText : ''"
            # the experiment opens on its training-runs table, with the sweep's parent run
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
    assert shot.stat().st_size > 10_000
