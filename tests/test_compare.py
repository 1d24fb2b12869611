"""``hairlab compare`` over a real SQLite store filled the way a sweep fills it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hairlab.cli import app
from hairlab.errors import HairlabError

RUNS = {  # name -> (optimizer, lr, final val/acc, status, diverged)
    "optimizer=adam,optimizer.lr=0.001": ("adam", 0.001, 0.61, "FINISHED", False),
    "optimizer=sgd,optimizer.lr=0.1": ("sgd", 0.1, 0.68, "FINISHED", False),
    "optimizer=sgd,optimizer.lr=10": ("sgd", 10.0, None, "FINISHED", True),
    "optimizer=adam,optimizer.lr=0.01": ("adam", 0.01, None, "FAILED", False),
}


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hairlab.tracking import store
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('cmp') / 'mlflow.db'}"
    client = store.client(uri)
    # an older experiment, so that "the newest" is a real choice
    client.create_run(store.ensure_experiment(client, "older", uri), run_name="x")
    exp = store.ensure_experiment(client, "adam_vs_sgd", uri)
    parent = client.create_run(exp, run_name="sweep", tags={
        "hairlab.sweep_parent": "true", "hairlab.swept_keys": "optimizer,optimizer.lr"})
    for name, (opt, lr, acc, status, diverged) in RUNS.items():
        run = client.create_run(exp, run_name=name, tags={"mlflow.parentRunId": parent.info.run_id})
        t = MLflowTracker(client, run.info.run_id, plots=False)
        t.log_params({"optimizer.name": opt, "optimizer.lr": lr, "seed": 0, "trainer.epochs": 2})
        for step in (1, 2):
            t.log_metrics({"train/loss": 2.0 / step, "train/acc": 0.3 * step}, step=step)
            if acc is not None:
                t.log_metrics({"val/acc": acc * step / 2, "val/loss": 1.5 / step}, step=step)
        t.log_metrics({"hw/paper2012/latency_s": 0.01, "model/params": 5000.0}, step=0)
        if diverged:
            t.set_tags({"diverged": "true", "diverged_step": "7"})
        if status == "FAILED":
            t.set_tags({"hairlab.error": "ValueError: boom"})
        t.close(status)
    client.set_terminated(parent.info.run_id)
    return uri


def compare(uri: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["compare", "adam_vs_sgd", "--tracking-uri", uri, *args],
                              env={"COLUMNS": "200"})


def test_json_has_key_params_final_metrics_and_status(store_uri: str) -> None:
    res = compare(store_uri, "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["run"] for r in rows] == list(RUNS)  # oldest first; the parent is left out
    row = rows[1]
    assert row["optimizer.name"] == "sgd" and row["optimizer.lr"] == "0.1"
    assert row["val/acc"] == pytest.approx(0.68) and row["hw/paper2012/latency_s"] == pytest.approx(0.01)
    assert "seed" not in row and "trainer.epochs" not in row  # the same in every run
    assert [r["status"] for r in rows] == ["FINISHED", "FINISHED", "DIVERGED@7", "FAILED"]
    assert rows[3]["note"] == "ValueError: boom"


def test_sort_puts_the_best_first(store_uri: str) -> None:
    res = compare(store_uri, "--format", "csv", "--sort", "val/acc")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.output)))
    best = ["optimizer=sgd,optimizer.lr=0.1", "optimizer=adam,optimizer.lr=0.001"]
    assert [r["run"] for r in rows][:2] == best
    assert rows[2]["val/acc"] == "" and rows[3]["val/acc"] == ""  # runs without the metric go last
    res = compare(store_uri, "--format", "csv", "--sort", "val/loss")
    losses = [r["val/loss"] for r in csv.DictReader(io.StringIO(res.output))]
    assert losses[:2] == ["0.75", "0.75"]


def test_markdown_and_table(store_uri: str) -> None:
    md = compare(store_uri, "--format", "markdown")
    assert md.exit_code == 0
    lines = md.output.splitlines()
    assert lines[0].startswith("| run | status | optimizer.name | optimizer.lr |")
    assert len(lines) == 2 + len(RUNS)
    table = compare(store_uri)
    assert table.exit_code == 0 and "adam_vs_sgd: 4 runs" in table.output and "DIVERGED@7" in table.output


def test_plot_writes_one_png_per_metric(store_uri: str, tmp_path: Path) -> None:
    res = compare(store_uri, "--plot", str(tmp_path / "plots"), "--format", "csv")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["train_acc.png", "train_loss.png", "val_acc.png", "val_loss.png"]
    assert all(p.stat().st_size > 5000 for p in (tmp_path / "plots").glob("*.png"))


def test_default_experiment_is_the_newest(store_uri: str) -> None:
    res = CliRunner().invoke(app, ["compare", "--tracking-uri", store_uri, "-f", "json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)) == len(RUNS)


@pytest.mark.parametrize(("args", "message"), [
    (["compare", "nope"], "no MLflow experiment named 'nope'; experiments in this store:"),
    (["compare", "adam_vs_sgd", "--sort", "val/accc"], "no run logged metric 'val/accc'; metrics:"),
])
def test_errors_name_the_fix(store_uri: str, args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, [*args, "--tracking-uri", store_uri])
    assert isinstance(res.exception, HairlabError) and message in str(res.exception)


def test_missing_store_is_not_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["compare"])
    assert isinstance(res.exception, HairlabError) and "no tracking database" in str(res.exception)
    assert not (tmp_path / "mlflow.db").exists()
    res = CliRunner().invoke(app, ["ui"])
    assert isinstance(res.exception, HairlabError) and "no tracking database" in str(res.exception)


def test_ui_command_line(tmp_path: Path) -> None:
    from hairlab.commands.tracking import ui_command

    cmd = ui_command("127.0.0.1", 5123, f"sqlite:///{tmp_path}/mlflow.db")
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")


def _fake_run(run_id: str, name: str, **params: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, run_name=name),
                           data=SimpleNamespace(params={k: str(v) for k, v in params.items()}))


def test_seeds_of_one_configuration_share_a_line() -> None:
    from hairlab.tracking.summary import seed_groups

    runs = [_fake_run(f"id{i}", f"run{i}", **{"optimizer.name": opt, "seed": seed})
            for i, (opt, seed) in enumerate([("adam", 0), ("adam", 1), ("sgd", 0), ("sgd", 1)])]
    assert seed_groups(runs) == {"optimizer.name=adam": ["run0", "run1"], "optimizer.name=sgd": ["run2", "run3"]}
    # timings that differ per run (data.load_s) do not split a group; the sweep's keys name it
    for i, run in enumerate(runs):
        run.data.params.update({"data.load_s": str(0.2 + i / 10), "optimizer.lr": str(i // 2)})
    assert list(seed_groups(runs, ["optimizer.name", "seed"])) == ["optimizer.name=adam", "optimizer.name=sgd"]
    # optimizer.lr only differs with the optimizer's name (each preset's default): the name says it
    assert list(seed_groups(runs)) == ["optimizer.name=adam", "optimizer.name=sgd"]
    runs[1].data.params["optimizer.lr"] = "5"  # now it varies within adam: a setting of its own
    assert list(seed_groups(runs)) == ["optimizer.lr=0, optimizer.name=adam", "optimizer.lr=5, optimizer.name=adam",
                                       "optimizer.lr=1, optimizer.name=sgd"]


def test_band_is_mean_min_max_over_shared_steps(tmp_path: Path) -> None:
    from hairlab.tracking.plots import _band, plot_bands

    steps, mean, low, high = _band([[(1, 1.0), (2, 4.0), (3, 9.0)], [(1, 3.0), (2, 2.0)]])
    assert (steps, mean, low, high) == ([1, 2], [2.0, 3.0], [1.0, 2.0], [3.0, 4.0])
    out = plot_bands({"a": [[(1, 1.0), (2, 2.0)], [(1, 2.0), (2, 3.0)]], "b": [[(1, 0.5)]]},
                     tmp_path / "x.png", title="x", ylabel="val/acc")
    assert out is not None and out.stat().st_size > 5000
    assert plot_bands({"a": [[]]}, tmp_path / "y.png", title="y", ylabel="y") is None


# -- non-finite values are never best (a diverged run's NaN or inf) ----------------------------
NONFINITE = {"a": 0.5, "b": float("nan"), "c": float("inf"), "d": 0.25, "e": float("-inf"), "f": None}


@pytest.fixture(scope="module")
def nonfinite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hairlab.tracking import store

    uri = f"sqlite:///{tmp_path_factory.mktemp('nan') / 'mlflow.db'}"
    client = store.client(uri)
    exp = store.ensure_experiment(client, "lr_1e9", uri)
    for name, value in NONFINITE.items():
        run = client.create_run(exp, run_name=name)
        client.log_metric(run.info.run_id, "train/loss", 1.0, step=1)
        if value is not None:
            client.log_metric(run.info.run_id, "val/loss", value, step=1)
            client.log_metric(run.info.run_id, "val/acc", value, step=1)  # +inf: the naive best accuracy
        client.set_terminated(run.info.run_id)
    return uri


def _order(uri: str, metric: str, fmt: str) -> list[str]:
    res = CliRunner().invoke(app, ["compare", "lr_1e9", "--tracking-uri", uri, "--sort", metric, "-f", fmt],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    if fmt == "json":
        return [r["run"] for r in json.loads(res.output)]
    if fmt == "csv":
        return [r["run"] for r in csv.DictReader(io.StringIO(res.output))]
    if fmt == "markdown":
        return [line.split("|")[1].strip() for line in res.output.splitlines()[2:]]
    # the rich table: one row per run, the run name in the first cell
    cells = [line.strip("│┃ ").split()[0] for line in res.output.splitlines() if line.startswith("│")]
    return [c for c in cells if c in NONFINITE]


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "markdown"])
@pytest.mark.parametrize("metric", ["val/loss", "val/acc"])
def test_sort_never_ranks_a_non_finite_value_best(nonfinite_uri: str, fmt: str, metric: str) -> None:
    order = _order(nonfinite_uri, metric, fmt)
    best = ["d", "a"] if metric == "val/loss" else ["a", "d"]  # lower loss, higher acc first
    assert order[:2] == best, order
    assert sorted(order[2:5]) == ["b", "c", "e"] and order[5] == "f", order  # non-finite, then missing


def test_json_stays_valid_with_non_finite_values(nonfinite_uri: str) -> None:
    res = CliRunner().invoke(app, ["compare", "lr_1e9", "--tracking-uri", nonfinite_uri, "-f", "json"])
    assert res.exit_code == 0, res.output
    assert "NaN" not in res.output and "Infinity" not in res.output  # not JSON
    rows = {r["run"]: r for r in json.loads(res.output)}
    assert rows["b"]["val/loss"] == "nan" and rows["d"]["val/loss"] == pytest.approx(0.25)


# -- --plot must name a directory ---------------------------------------------------------------
@pytest.mark.parametrize("where", ["file", "inside_file"])
def test_plot_to_a_file_is_one_line(store_uri: str, tmp_path: Path, where: str) -> None:
    existing = tmp_path / "plots.png"
    existing.write_bytes(b"not a directory")
    target = existing if where == "file" else existing / "curves"
    res = compare(store_uri, "--plot", str(target), "--format", "csv")
    assert isinstance(res.exception, HairlabError), res.output
    assert "is a file" in str(res.exception) or "which is a file" in str(res.exception)
    assert str(target) in str(res.exception) and "\n" not in str(res.exception)
    assert res.output == "", "refused before printing the table"
    assert existing.read_bytes() == b"not a directory"


# -- compare closes ghosts before it shows them -------------------------------------------------
def test_compare_reconciles_a_run_whose_process_is_gone(tmp_path: Path) -> None:
    import subprocess
    import sys

    from hairlab.tracking import liveness, store

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = store.client(uri)
    exp = store.ensure_experiment(client, "ghosts", uri)
    tags = {**liveness.owner_tags(dead.pid), liveness.HEARTBEAT: liveness.heartbeat_value()}
    ghost = client.create_run(exp, run_name="killed -9", tags=tags)
    client.log_metric(ghost.info.run_id, "train/loss", 2.0, step=1)
    alive = client.create_run(exp, run_name="alive", tags={**liveness.owner_tags(), liveness.HEARTBEAT: "0"})
    res = CliRunner().invoke(app, ["compare", "ghosts", "--tracking-uri", uri, "-f", "json"])
    assert res.exit_code == 0, res.output
    statuses = {r["run"]: r["status"] for r in json.loads(res.output[res.output.index("["):])}
    assert statuses == {"killed -9": "KILLED", "alive": "RUNNING"}
    assert client.get_run(ghost.info.run_id).data.tags["hairlab.reconciled"] == "process gone"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"  # this very process: alive


# -- a table that fits: 80-120 columns, params that vary, short names, --columns ----------------
@pytest.fixture(scope="module")
def model_sweep_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A `model=hairnet_cifar,alexnet optimizer.lr=...` sweep of the new store: test/* and the selection tag."""
    from hairlab.tracking import store
    from hairlab.tracking.mlflow_tracker import MLflowTracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('models') / 'mlflow.db'}"
    client = store.client(uri)
    exp = store.ensure_experiment(client, "models", uri)
    parent = client.create_run(exp, run_name="sweep", tags={
        "hairlab.sweep_parent": "true", "hairlab.swept_keys": "model,optimizer.lr"})
    for i, (model, lr, acc) in enumerate([("hairnet_cifar", 0.001, 0.5), ("hairnet_cifar", 0.01, 0.7),
                                           ("alexnet", 0.001, 0.6), ("alexnet", 0.01, 0.4)]):
        name = f"model={model},optimizer.lr={lr}"
        run = client.create_run(exp, run_name=name, tags={"mlflow.parentRunId": parent.info.run_id,
                                                          "hairlab.selection_metric": "test/acc"})
        t = MLflowTracker(client, run.info.run_id, plots=False)
        stages = {f"model.stages.{s}.{k}": f"{model}-{s}-{k}" for s in range(6) for k in ("block", "width", "repeat")}
        t.log_params({"model.name": model, "optimizer.lr": lr, "model.width_multiplier": 1.0, **stages})
        t.log_metrics({"train/loss": 1.0 + i, "train/acc": 0.3, "test/acc": acc, "test/loss": 1.0 - acc,
                       "throughput/img_s": 812.5 + i, "time/epoch_s": 12.25, "lr": lr}, step=1)
        t.log_metrics({"model/params": 123456.0 * (i + 1), "hw/paper2012/latency_s": 0.0123}, step=0)
        t.close("FINISHED")
    client.set_terminated(parent.info.run_id)
    return uri


@pytest.mark.parametrize("width", [80, 120])
def test_table_fits_the_terminal_and_keeps_the_run_name(model_sweep_uri: str, width: int) -> None:
    res = CliRunner().invoke(app, ["compare", "models", "--tracking-uri", model_sweep_uri],
                             env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= width, "\n".join(lines)
    assert "model=alexnet" in res.output  # the run name stays
    assert "stages" not in res.output  # the model's name says what its stages are
    header = next(line for line in lines if line.startswith("┃"))
    assert "lr" in header and "model" in header and "test/acc" in header, header
    assert "best by test/acc: model=hairnet_cifar,optimizer.lr=0.01" in res.output.replace("\n", "")
    if width == 80:
        assert "not shown (terminal width 80)" in res.output and "--columns picks" in res.output


def test_columns_picks_what_to_show(model_sweep_uri: str) -> None:
    res = CliRunner().invoke(app, ["compare", "models", "--tracking-uri", model_sweep_uri, "--columns",
                                   "run,lr,test/*"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃").split("┃")] == ["run", "lr", "test/acc", "test/loss"]
    res = CliRunner().invoke(app, ["compare", "models", "--tracking-uri", model_sweep_uri, "-f", "csv",
                                   "--columns", "run,optimizer.lr"])
    assert res.output.splitlines()[0] == "run,optimizer.lr"
    res = CliRunner().invoke(app, ["compare", "models", "--tracking-uri", model_sweep_uri, "--columns", "nope"])
    assert isinstance(res.exception, HairlabError) and "--columns nope: no such column" in str(res.exception)


def test_an_older_store_with_val_only_still_compares(store_uri: str) -> None:
    """Runs from before the split names (val/* only, no selection tag) select on val/acc."""
    res = CliRunner().invoke(app, ["compare", "adam_vs_sgd", "--tracking-uri", store_uri], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "best by val/acc: optimizer=sgd,optimizer.lr=0.1" in res.output.replace("\n", "")


def test_selection_metric_tag_then_val_then_test() -> None:
    from types import SimpleNamespace

    from hairlab.tracking.summary import best_run, selection_metric

    def run(tags: dict[str, str], metrics: dict[str, float], status: str = "FINISHED") -> Any:
        return SimpleNamespace(info=SimpleNamespace(status=status, run_id="x", run_name="x"),
                               data=SimpleNamespace(tags=tags, metrics=metrics, params={}))

    assert selection_metric(run({"hairlab.selection_metric": "test/acc"}, {"val/acc": 1.0})) == "test/acc"
    assert selection_metric(run({}, {"val/acc": 1.0, "test/acc": 0.5})) == "val/acc"
    assert selection_metric(run({}, {"test/acc": 0.5})) == "test/acc"
    assert selection_metric(run({}, {"train/acc": 0.5})) is None
    a, b = run({}, {"val/acc": 0.6, "test/acc": 0.9}), run({}, {"val/acc": 0.7, "test/acc": 0.1})
    nan = run({}, {"val/acc": float("nan")})
    failed = run({}, {"val/acc": 0.99}, status="FAILED")
    assert best_run([a, b, nan, failed]) == (b, "val/acc")  # selected on val, never on test, NaN or a failure
    assert best_run([failed]) is None


def test_short_names_stay_unique() -> None:
    from hairlab.tracking.summary import short_names

    names = short_names(["run", "optimizer.name", "optimizer.lr", "trainer.lr", "model.stages.1.activation",
                         "throughput/img_s", "hw/paper2012/latency_s"])
    assert names["optimizer.name"] == "optimizer" and names["model.stages.1.activation"] == "stages.1.activation"
    assert names["optimizer.lr"] == "optimizer.lr" and names["trainer.lr"] == "trainer.lr"  # "lr" would clash
    assert names["throughput/img_s"] == "img/s" and names["hw/paper2012/latency_s"] == "paper2012 s"


# -- plot labels: the split's own name, a log axis for learning rates that span decades ------------
def _drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Capture each saved figure's legend texts and y scale (by file name)."""
    from matplotlib.figure import Figure

    seen: dict[str, Any] = {}
    original = Figure.savefig

    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        ax = self.axes[0]
        legend = ax.get_legend()
        seen[Path(str(fname)).name] = ([t.get_text() for t in legend.get_texts()] if legend else [], ax.get_yscale())
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return seen


def test_job_plots_name_the_evaluated_split_and_log_the_lr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hairlab.tracking.plots import job_curves

    seen = _drawn(monkeypatch)
    warmup = [(s, 1e-4 * s) for s in range(1, 11)] + [(s, 1e-3) for s in range(11, 30)]
    history = {"train/loss": [(1, 2.0), (2, 1.5)], "test/loss": [(2, 1.6)], "train/acc": [(1, 0.2), (2, 0.3)],
               "test/acc": [(2, 0.25)], "lr": warmup}
    paths = job_curves(history, tmp_path)
    assert sorted(p.name for p in paths) == ["acc.png", "loss.png", "lr.png"]
    assert seen["loss.png"][0] == ["test", "train"] and seen["acc.png"][0] == ["test", "train"]  # never "val"
    assert seen["lr.png"][1] == "log"
    job_curves({"lr": [(1, 0.1), (2, 0.1)]}, tmp_path / "flat")
    assert seen["lr.png"][1] == "linear"  # a constant rate needs no log axis


def test_the_ui_server_prints_no_dependency_deprecation_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hairlab ui`: the MLflow server's app module, imported as its workers import it, warns nothing."""
    import subprocess
    import sys

    from hairlab.commands.tracking import server_env

    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    monkeypatch.delenv("HAIRLAB_DEBUG", raising=False)
    env = {k: v for k, v in server_env().items() if k != "PYTHONWARNINGS"}
    noisy = subprocess.run([sys.executable, "-c", "import mlflow.server.fastapi_app"], env=env,
                           capture_output=True, text=True, timeout=300)
    quiet = subprocess.run([sys.executable, "-c", "import mlflow.server.fastapi_app"], env=server_env(),
                           capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "Deprecat" not in quiet.stderr, quiet.stderr
    if "Deprecat" not in noisy.stderr:
        pytest.skip("this mlflow/starlette pair warns nothing to filter")


def _results_tables() -> Any:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("results_tables", root / "docs" / "tools" / "results_tables.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_results_tables_read_old_and_new_split_names() -> None:
    """docs/tools/results_tables.py: `test/acc` of a run from before the split names is its `val/acc`."""
    from types import SimpleNamespace

    tool = _results_tables()

    def run(metrics: dict[str, float], tags: dict[str, str]) -> Any:
        return SimpleNamespace(data=SimpleNamespace(metrics=metrics, tags=tags))

    old = run({"val/acc": 0.6}, {})
    new_val = run({"val/acc": 0.7}, {"hairlab.selection_metric": "val/acc"})  # a real validation split
    new_test = run({"test/acc": 0.5}, {"hairlab.selection_metric": "test/acc"})
    assert tool.metric(old, "test/acc") == pytest.approx(0.6)
    assert tool.metric(new_val, "test/acc") is None, "a validation accuracy is never shown as a test one"
    assert tool.metric(new_test, "test/acc") == pytest.approx(0.5)


def test_results_tables_interval_is_welchs() -> None:
    """The contrast column's 95% interval: Welch's t on the two groups' seeds, checked by hand.

    [1, 2, 3] against [4, 5, 6]: difference -3, each variance 1, standard error sqrt(2/3), 4
    degrees of freedom, t(0.975, 4) = 2.7764, so the half-width is 2.2669.
    """
    tool = _results_tables()
    diff, half = tool.interval([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert diff == pytest.approx(-3.0)
    assert half == pytest.approx(2.7764 * (2 / 3) ** 0.5, rel=1e-4)
    # unequal variances and sizes: the Welch-Satterthwaite degrees of freedom, not n1 + n2 - 2
    diff, half = tool.interval([0.0, 10.0], [5.0, 5.1, 4.9, 5.0])
    assert diff == pytest.approx(0.0)
    assert half == pytest.approx(12.706 * (50 / 2 + 0.00667 / 4) ** 0.5, rel=1e-3)
    assert tool.interval([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="2 seeds"):
        tool.interval([1.0], [1.0, 2.0])


def test_results_tables_read_a_config_group_from_the_overrides() -> None:
    """A swept group with a global package (``ablation=r3``) has no parameter: its override names it."""
    from types import SimpleNamespace

    tool = _results_tables()
    run = SimpleNamespace(data=SimpleNamespace(
        params={"seed": "1", "optimizer.name": "sgd"},
        tags={"hairlab.overrides": "trainer.max_steps=null,seed=1,ablation=r3,+experiment=cifar_ablation"}))
    assert tool.setting(run, "ablation") == "r3"
    assert tool.setting(run, "optimizer.name") == "sgd"
    assert tool.setting(run, "experiment") == "cifar_ablation"
    assert tool.setting(run, "nothing") == ""


def test_results_tables_derive_steps_images_and_minutes() -> None:
    """A time-budget run is compared by what it trained: steps, images (steps x batch) and minutes."""
    from types import SimpleNamespace

    tool = _results_tables()
    history = [SimpleNamespace(step=s) for s in (20, 384, 727)]
    client = SimpleNamespace(get_metric_history=lambda run_id, key: history if key == "train/loss" else [])
    run = SimpleNamespace(info=SimpleNamespace(run_id="r"), data=SimpleNamespace(
        params={"trainer.batch_size": "128"}, metrics={"time/train_s": 600.0, "time/total_s": 645.0}))
    tool.derive(client, run)
    assert run.data.metrics["steps"] == 727 and run.data.metrics["images"] == 727 * 128
    assert run.data.metrics["train_min"] == pytest.approx(10.0)
    assert run.data.metrics["total_min"] == pytest.approx(10.75)
    assert tool._fmt([727.0, 731.0], "steps") == "729 (727-731)"


def test_results_tables_natural_order_puts_r2_before_r10() -> None:
    """``--reference previous`` sorts an ablation's rows by setting, numbers by value."""
    tool = _results_tables()
    rows = ["r10", "r2", "r1", "r0"]
    assert sorted(rows, key=tool.natural) == ["r0", "r1", "r2", "r10"]
    assert sorted(["0.1", "0.01", "0.3"], key=tool.natural) == ["0.01", "0.1", "0.3"]


def test_results_tables_references() -> None:
    """``--reference``: first, previous, or the setting named KEY=VALUE (an unknown one is refused)."""
    tool = _results_tables()
    rows = [("adam", "lo", "FINISHED"), ("sgd", "lo", "FINISHED"), ("sgd", "mid", "FINISHED")]
    names = ["optimizer.name", "lr_pick"]
    assert tool.references(rows, names, "first") == {rows[0]: None, rows[1]: rows[0], rows[2]: rows[0]}
    assert tool.references(rows, names, "previous") == {rows[0]: None, rows[1]: rows[0], rows[2]: rows[1]}
    assert tool.references(rows, names, "optimizer.name=sgd,lr_pick=lo")[rows[0]] == rows[1]
    with pytest.raises(SystemExit, match="no finished setting matches"):
        tool.references(rows, names, "optimizer.name=lion")
    with pytest.raises(SystemExit, match="no finished setting matches"):
        tool.references(rows, names, "typo=sgd")
