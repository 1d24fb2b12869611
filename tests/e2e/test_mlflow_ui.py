"""End to end: ``hairlab run -m`` logs a sweep to the default store (``./mlflow.db``),
``hairlab ui`` serves it, and real headless Chromium opens the link ``hairlab ui`` prints:

- the experiment's runs table lists the sweep's parent run and, expanded, every child run;
- a real training sweep (``optimizer=adam,sgd`` on synthetic data) shows each child's Dataset
  (name and digest, with its context) in the runs table, and the compare view of its two runs,
  with "Show diff only" on, lists only config params: no data-loading fact
  (``cache_hit``, ``load_s``, ``first_decode_s``, ``cache_file``) and no ``data.*`` key.

Screenshots go to ``$HAIRLAB_TEST_OUTPUT`` (else the test's tmp dir); docs/img/ui/ keeps a copy
of each (docs/tracking.md).

Run on its own with ``pytest -m e2e tests/e2e/test_mlflow_ui.py`` (needs Debian's
``chromium``; the test is skipped without it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from chromium import browser, find_chromium  # noqa: E402
from mlflow_server import free_port, wait_healthy  # noqa: E402
from test_tracking_sweep import TOY, client, hairlab, runs_of  # noqa: E402

NO_CHROMIUM = "needs Debian's chromium (apt-get install -y chromium)"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_chromium() is None, reason=NO_CHROMIUM)]

LRS = ("0.1", "0.2", "0.3")


TEXT = "document.body ? document.body.innerText : ''"
#: Data-loading facts that must never be params (they would lead every "diff only" list).
DATA_FACTS = ("cache_hit", "load_s", "first_decode_s", "cache_file")


@contextlib.contextmanager
def hairlab_ui(work: Path, tmp_path: Path) -> Iterator[str]:
    """``hairlab ui`` on ``work``'s store; yields the link it prints, and checks the server dies with it."""
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
        yield link.group(1)
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


def expand_parent(page: Any) -> None:
    """Children are nested under the parent; expand it the way a user would."""
    page.wait_for("""(() => {
        const b = document.querySelector('button[data-component-id*="runnamecellrenderer" i]');
        if (b) { b.click(); return true; } return false; })()""", timeout=60)


def test_mlflow_ui_lists_the_sweep_in_chromium(tmp_path: Path) -> None:
    out_dir = Path(os.environ.get("HAIRLAB_TEST_OUTPUT") or tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    res = hairlab(["-m", TOY, "tracking.experiment=ui_check", f"optimizer.lr={','.join(LRS)}"], work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert (work / "mlflow.db").is_file()

    with hairlab_ui(work, tmp_path) as link, browser(tmp_path / "chromium-profile") as page:
        parent_name = "sweep optimizer.lr=" + ",".join(LRS)
        children = [f"optimizer.lr={lr}" for lr in LRS]
        page.call("Page.navigate", url=link)
        # the training-runs table of the experiment, with the sweep's parent run
        page.wait_for(f"({TEXT}).includes({json.dumps(parent_name)})", timeout=180)
        expand_parent(page)
        checks = " && ".join(f"({TEXT}).includes({json.dumps(name)})" for name in children)
        try:
            page.wait_for(checks, timeout=60)
        finally:
            shot = page.screenshot(out_dir / "mlflow-ui-sweep.png")
        body = page.evaluate(TEXT)
    assert all(name in body for name in [parent_name, *children])
    assert f"{len(children) + 1} matching runs" in body
    assert shot.stat().st_size > 10_000


def test_mlflow_ui_shows_datasets_and_a_diff_of_config_only(tmp_path: Path) -> None:
    out_dir = Path(os.environ.get("HAIRLAB_TEST_OUTPUT") or tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    res = hairlab(["-m", "dataset=synthetic", "dataset.train_size=64", "dataset.test_size=32", "trainer.max_steps=2",
                   "trainer.batch_size=32", "trainer.progress=false", "trainer.checkpoint=none",
                   "tracking.experiment=ui_data", "optimizer=adam,sgd"], work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    parent, children = runs_of(work, "ui_data")
    assert len(children) == 2
    for run in children:  # the store itself: facts are tags, the splits are inputs
        assert not any(k.startswith("data.") or k.endswith(DATA_FACTS) for k in run.data.params)
        assert {i.tags[0].value for i in run.inputs.dataset_inputs} == {"training", "test"}
    train_digest = {i.dataset.digest for i in children[0].inputs.dataset_inputs
                    if i.tags[0].value == "training"}.pop()
    experiment = client(work).get_experiment_by_name("ui_data").experiment_id

    with hairlab_ui(work, tmp_path) as link, browser(tmp_path / "chromium-profile") as page:
        base = link.split("/#/", 1)[0]
        page.call("Page.navigate", url=f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning")
        page.wait_for(f"({TEXT}).includes({json.dumps(parent.info.run_name)})", timeout=180)
        expand_parent(page)
        shown = f"synthetic ({train_digest})"  # the Dataset column: name (digest), then the context
        try:
            page.wait_for(f"({TEXT}).includes({json.dumps(shown)}) && ({TEXT}).includes('Training')", timeout=60)
        finally:
            page.screenshot(out_dir / "mlflow-ui-datasets.png")
        body = page.evaluate(TEXT)
        assert all(run.info.run_name in body for run in children)
        assert "Dataset" in body and body.count(shown) >= 2  # each child shows its training split

        ids = json.dumps([run.info.run_id for run in children])
        page.call("Page.navigate", url=f"{base}/#/compare-runs?runs={urllib.parse.quote(ids)}"
                                       f"&experiments={urllib.parse.quote(json.dumps([experiment]))}")
        page.wait_for(f"({TEXT}).includes('Show diff only')", timeout=180)
        # the first "Show diff only" switch belongs to the Parameters table
        page.evaluate("document.querySelectorAll('button[role=switch]')[0].click()")
        section = """(() => { const sw = document.querySelectorAll('button[role=switch]')[0];
            sw.scrollIntoView({block: 'start'});
            return sw.getAttribute('aria-checked') === 'true' ? sw.closest('div').parentElement.innerText : ''; })()"""
        try:
            page.wait_for(f"{section}.includes('optimizer.name')", timeout=60)
        finally:
            page.screenshot(out_dir / "mlflow-ui-diff.png")
        diff = page.evaluate(section)
    rows = [line.split("\t")[0].strip() for line in diff.splitlines()[1:] if line.strip()]
    assert "optimizer.name" in rows and "optimizer.lr" in rows, diff
    assert not [r for r in rows if r.startswith("data") or r.endswith(DATA_FACTS)], diff
    assert all(r.startswith("optimizer.") for r in rows), rows  # only what the sweep changed


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
            return True
    except OSError:
        return False
