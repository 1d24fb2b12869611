"""The CLI surface: help, version, plugin listings, and Hydra pass-through."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli


def test_help_imports_neither_torch_nor_mlflow() -> None:
    code = (
        "import sys\n"
        "from hairlab.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'hydra', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY="), out


def test_version(tmp_path: Path) -> None:
    from hairlab import __version__

    res = run_cli(["--version"], cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"hairlab {__version__}"


def test_plugins_table_lists_builtins(tmp_path: Path) -> None:
    res = run_cli(["plugins"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("hairnet", "optim", "datasets", "hardware"):
        assert name in res.stdout
    assert "optimizers: adam, sgd" in res.stdout


def test_list_with_pattern(tmp_path: Path) -> None:
    res = run_cli(["list", "optimizers", "s*"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "sgd" in res.stdout and "adam" not in res.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list", "widgets"], "unknown plugin kind 'widgets'; choose one of: blocks, heads"),
        (["list", "optimizers", "zz*"], "no optimizers match 'zz*'; available: adam"),
        (["run", "optimizer=adamw"], "unknown optimizer option 'adamw'; available: adam, sgd"),
        (["run", "+experiment=nope"], "unknown experiment option 'nope'; available:"),
        (["run", "+experiment=nope"], "(choose one with +experiment=NAME"),  # the + form: the plain one fails
        (["run", "experiment=adam_vs_sgd"], "experiment is not in the defaults list, so it cannot be overridden; "
                                            "add it with +experiment=adam_vs_sgd"),
        (["run", "model.stages.1.activation=swish"], "+model.stages.1.activation=swish adds it"),
        (["run", "hydra/launcher=nope"], "unknown hydra/launcher option 'nope'; available: basic"),
        (["run", "nosuchkey=3"], "nosuchkey"),
        (["run", "optimizer.lr=abc", "dataset=synthetic", "tracking=local", "hw_targets=[]"],
         "optimizer.lr='abc': expected float (optimizer 'adam' (plugin optim"),
        (["run", "model.stages.1.block=nope", "dataset=synthetic", "tracking=local", "hw_targets=[]"],
         "unknown blocks entry 'nope'; available: conv_bn_relu"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    res = run_cli(args, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hairlab: ") and expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr


def test_cfg_job_shows_composed_config(tmp_path: Path) -> None:
    res = run_cli(["run", "--cfg", "job", "optimizer=sgd", "optimizer.lr=0.05"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "name: sgd" in res.stdout and "lr: 0.05" in res.stdout
    assert not (tmp_path / "outputs").exists()  # --cfg runs nothing


def test_info_searchpath_and_defaults(tmp_path: Path) -> None:
    res = run_cli(["run", "--info", "searchpath"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pkg://hairlab_conf" in res.stdout
    res = run_cli(["run", "--info", "defaults"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "optimizer/adam" in res.stdout


def test_hydra_help_passes_through(tmp_path: Path) -> None:
    res = run_cli(["run", "--help"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Override anything in the config" in res.stdout or "Powered by Hydra" in res.stdout


def test_config_tree_is_packaged() -> None:
    """Every YAML in conf/ ships in the wheel (package-data glob) and is reachable as a resource."""
    from importlib.resources import files

    root = files("hairlab_conf")
    assert root.joinpath("config.yaml").is_file()
    on_disk = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    for rel in on_disk:
        assert root.joinpath(rel).is_file(), rel


def test_list_one_entry_shows_its_options(tmp_path: Path) -> None:
    res = run_cli(["list", "optimizers", "sgd", "--format", "json"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["kind"] == "optimizers" and data["name"] == "sgd" and data["plugin"] == "optim"
    options = {o["option"]: o for o in data["options"]}
    assert "lr" in options and "momentum" in options, options
    assert set(options["lr"]) == {"option", "type", "default", "help"}
    assert "float" in options["lr"]["type"]
    res = run_cli(["list", "optimizers", "sgd"], cwd=tmp_path)
    assert res.returncode == 0 and "momentum" in res.stdout and "plugin optim" in res.stdout
    # An exact name that does not exist lists the alternatives, in one line.
    res = run_cli(["list", "optimizers", "sgdd"], cwd=tmp_path)
    assert res.returncode == 2 and "unknown optimizers entry 'sgdd'; available: adam, sgd" in res.stderr


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_list_and_plugins_take_a_format(tmp_path: Path, fmt: str) -> None:
    res = run_cli(["list", "blocks", "--format", fmt], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res2 = run_cli(["plugins", "--format", fmt], cwd=tmp_path)
    assert res2.returncode == 0, res2.stderr
    if fmt == "json":
        assert {r["name"] for r in json.loads(res.stdout)} >= {"conv_bn_relu", "dw_separable"}
        assert {p["plugin"] for p in json.loads(res2.stdout)} >= {"hairnet", "optim", "datasets", "hardware"}
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
        assert {"name", "description", "plugin"} == set(rows[0]) and "dw_separable" in {r["name"] for r in rows}
        rows = list(csv.DictReader(io.StringIO(res2.stdout)))
        assert {r["plugin"]: r["status"] for r in rows}["optim"] == "ok"
    else:
        assert res.stdout.startswith("| name | description | plugin |")
        assert res2.stdout.startswith("| plugin | kinds | provides |")


@pytest.mark.parametrize("args", [["list", "blocks", "--format", "csv"], ["--help"], ["run", "--help"],
                                  ["compare", "--help"]])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """`hairlab list blocks | head -0`, `hairlab --help | head`: no BrokenPipeError traceback,
    no `[Errno 32] Broken pipe` line, no 'Exception ignored' line."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "hairlab", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before hairlab writes a byte
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (1, 141), err  # click's EPIPE status, or ours at the final flush
    assert "BrokenPipe" not in err and "Broken pipe" not in err and "Exception ignored" not in err and err == "", err


@pytest.mark.parametrize("plugin", ["hairnet", "optim", "datasets", "hardware"])
def test_any_builtin_can_be_disabled(tmp_path: Path, plugin: str) -> None:
    """hairlab's core needs no particular plugin: with one built-in off, the rest works."""
    env = {"HAIRLAB_DISABLE_PLUGINS": plugin}
    res = run_cli(["plugins", "--format", "json"], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    status = {p["plugin"]: p["status"] for p in json.loads(res.stdout)}
    assert status.pop(plugin) == "disabled" and set(status.values()) == {"ok"}, status
    for kind in ("blocks", "heads", "optimizers", "hardware", "datasets"):
        res = run_cli(["list", kind, "--format", "json"], cwd=tmp_path, env=env)
        provided = {"hairnet": ("blocks", "heads"), "optim": ("optimizers",), "datasets": ("datasets",),
                    "hardware": ("hardware",)}[plugin]
        if kind in provided:
            assert res.returncode == 2 and f"no {kind} match '*'" in res.stderr, res.stderr
        else:
            assert res.returncode == 0 and json.loads(res.stdout), (kind, res.stderr)


def test_training_runs_with_the_hardware_plugin_disabled(tmp_path: Path) -> None:
    """`hw_targets: auto` (the default) reports on no target when none is loaded."""
    res = run_cli(["run", "dataset=synthetic", "dataset.train_size=32", "dataset.test_size=16", "tracking=local",
                   "trainer.batch_size=16", "trainer.epochs=1", "trainer.max_steps=1", "trainer.threads=1"],
                  cwd=tmp_path, env={"HAIRLAB_DISABLE_PLUGINS": "hardware"})
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = list(tmp_path.glob("outputs/*/*/metrics.jsonl"))
    assert metrics and "train/loss" in metrics[0].read_text()
    assert "hw/" not in metrics[0].read_text()


def test_misspelt_disabled_plugin_is_one_warning_line(tmp_path: Path) -> None:
    res = run_cli(["list", "optimizers", "--format", "csv"], cwd=tmp_path, env={"HAIRLAB_DISABLE_PLUGINS": "optm"})
    assert res.returncode == 0 and "adam" in res.stdout, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hairlab: warning: $HAIRLAB_DISABLE_PLUGINS names no installed "
                                                   "plugin: optm"), res.stderr
    assert "datasets, hairnet, hardware, optim" in lines[0]


@pytest.mark.parametrize(("group", "option", "extra"), [
    ("hydra/launcher", "joblib", "joblib"), ("hydra/launcher", "submitit_slurm", "slurm"),
    ("hydra/launcher", "submitit_local", "slurm"), ("hydra/sweeper", "optuna", "search"),
])
def test_a_missing_hydra_plugin_names_the_extra(group: str, option: str, extra: str) -> None:
    """`hydra/launcher=joblib` without the plugin installed: Hydra's own exception, as it raises it."""
    from hydra.errors import MissingConfigException

    from hairlab.hydra_app import describe_config_error

    exc = MissingConfigException(f"Could not find '{group}/{option}'\nAvailable options in '{group}':\n\tbasic\n",
                                 missing_cfg_file=f"{group}/{option}", options=["basic"])
    text = describe_config_error(exc)
    assert text == f"unknown {group} option '{option}'; available: basic; {option} needs an extra: " \
                   f"pip install 'hairlab[{extra}]'", text


def test_the_hint_suggested_for_a_new_key_is_what_runs(tmp_path: Path) -> None:
    """The `+key=value` a hint suggests reaches the entry's own check (its options named), not Hydra's."""
    res = run_cli(["run", "+model.stages.1.activation=swish", "dataset=synthetic", "tracking=local"], cwd=tmp_path)
    assert res.returncode == 2 and "not an option of block 'dw_separable'" in res.stderr, res.stderr
    assert "valid options: batch_norm, kernel_size" in res.stderr


@pytest.mark.parametrize(("line", "expected"), [
    ("hairlab run optimizer=", {"optimizer=adam", "optimizer=sgd"}),
    ("hairlab run optimizer.l", {"optimizer.lr="}),
    ("hairlab run +experiment=adam", {"+experiment=adam_vs_sgd"}),
    ("hairlab run -m seed=0,1 hydra/launcher=jo", {"hydra/launcher=joblib"}),
])
def test_hydra_completion_through_hairlab_run(tmp_path: Path, line: str, expected: set[str]) -> None:
    """Hydra's bash completion as bash runs it: the installed function, COMP_LINE, COMPREPLY."""
    import shutil

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    words = line.split()
    script = (f'eval "$(hairlab run -sc install=bash)"\n'
              f'COMP_LINE="{line}"; COMP_POINT={len(line)}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n'
              '_hairlab_hydra_completion; printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    res = subprocess.run([bash, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert set(res.stdout.split()) == expected, (res.stdout, res.stderr)


def test_completion_query_reads_the_words_after_run(tmp_path: Path) -> None:
    """`hairlab run -sc query=bash` (what the script calls) no longer reads `run` as an override."""
    res = run_cli(["run", "-sc", "query=bash"], cwd=tmp_path, env={"COMP_LINE": "hairlab run trainer.max_st"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["trainer.max_steps="]
    res = run_cli(["run", "-sc", "install=bash"], cwd=tmp_path)
    assert res.returncode == 0 and "complete -o nospace -o default -F _hairlab_hydra_completion hairlab" in res.stdout


def test_load_average_is_printed_as_people_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host target's note: `load average 7.23`, not the float's every digit."""
    from hairlab_plugins.hardware.host import host

    from hairlab.costmodel import calibrate

    cal = {"threads": 1, "cpu": "test cpu", "torch": "2", "bandwidth": 1e10, "gemm_flops": 1e11,
           "generic_flops": 1e9, "layer_overhead_s": 1e-5, "conv_flops": 1e10, "pwconv_flops": 1e10,
           "dwconv_flops": 1e9, "bn_flops": 1e9, "relu_flops": 1e9, "pool_flops": 1e9, "caches": {"L2": 2**20},
           "measured_at": "2026-12-01 12:00:00", "loadavg": 7.23486328125, "cache_file": "x.json"}
    monkeypatch.setattr(calibrate, "calibration", lambda threads, refresh=False: cal)
    note = host().notes[0]
    assert "(load average 7.23)" in note and "7.2348" not in note, note


def test_the_wheel_session_keeps_the_report_out_of_the_log() -> None:
    """noxfile's wheel session writes hw-report's CSV to a file instead of printing it into the log."""
    import ast

    tree = ast.parse((REPO / "noxfile.py").read_text())
    wheel = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "wheel")
    calls = [n for n in ast.walk(wheel) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "run"]
    reports = [c for c in calls if any(isinstance(a, ast.Constant) and a.value == "hw-report" for a in c.args)]
    assert reports, "the wheel session smoke-tests hw-report"
    for call in reports:
        words = [a.value for a in call.args if isinstance(a, ast.Constant)]
        assert "--output" in words or any(k.arg == "silent" for k in call.keywords), words


def _readme_runs() -> list[list[str]]:
    """The README's single-job `hairlab run ...` lines (a sweep's -m cannot go with --cfg)."""
    import shlex

    out = []
    for line in (REPO / "README.md").read_text().splitlines():
        if not line.startswith("hairlab run "):
            continue
        words = shlex.split(line.split("#", 1)[0])[2:]
        if any(w in ("-m", "-cd", "--cfg", "-sc") or w.startswith("hydra.searchpath") for w in words):
            continue
        out.append(words)
    return out


@pytest.mark.parametrize("words", _readme_runs(), ids=" ".join)
def test_the_readme_run_lines_compose(tmp_path: Path, words: list[str]) -> None:
    res = run_cli(["run", *words, "--cfg", "job"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_the_readme_sets_the_data_for_the_whole_shell() -> None:
    text = (REPO / "README.md").read_text()
    usage = text[text.index("## Usage"):]
    assert usage.index("export HAIRLAB_DATA=") < usage.index("hairlab run ")
    assert "--plot docs/" not in text, "examples write outside the repository's own docs"


# -- the terminal: progress outside a TTY, the job's ETA, the sweep position -------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _epochs(progress: object, clock: _Clock, epochs: int = 2, steps: int = 100, every: int = 10) -> None:
    for epoch in range(1, epochs + 1):
        progress.start(epoch, epochs, steps)  # type: ignore[attr-defined]
        for done in range(every, steps + 1, every):
            clock.now += 1.0  # 10 steps a second
            progress.update(done, 1.5, 0.25, 320.0)  # type: ignore[attr-defined]
        progress.stop()  # type: ignore[attr-defined]
        progress.summary(f"epoch {epoch}/{epochs} " + "summary " * 20)  # type: ignore[attr-defined]


def test_progress_outside_a_terminal_is_plain_lines_every_n_seconds() -> None:
    from rich.console import Console

    from hairlab.training.progress import EpochProgress

    buf, clock = io.StringIO(), _Clock()
    console = Console(file=buf, force_terminal=False, width=80)
    _epochs(EpochProgress(True, console, interval=5.0, position="job 3/12", clock=clock), clock)
    lines = buf.getvalue().splitlines()
    progress = [ln for ln in lines if "loss 1.5000" in ln]
    assert len(progress) == 4, lines  # at 1 s, then every 5 s: 2 per 10-second epoch
    assert progress[0] == "job 3/12  epoch 1/2  step 10/200  loss 1.5000  acc 0.250  320 img/s  ETA job 19s"
    assert progress[-1].startswith("job 3/12  epoch 2/2  step 160/200") and progress[-1].endswith("ETA job 4s")
    assert all("\x1b" not in ln for ln in lines), "no escape codes in a log"
    summaries = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(summaries) == 2 and all(len(ln) > 80 for ln in summaries), "one line each, never wrapped at 80"


def test_progress_in_a_terminal_shows_the_position_and_the_job_eta() -> None:
    from rich.console import Console

    from hairlab.training.progress import EpochProgress

    buf, clock = io.StringIO(), _Clock()
    console = Console(file=buf, force_terminal=True, width=160)
    progress = EpochProgress(True, console, position="job 3/12", clock=clock)
    progress.plan(300, 0)  # the engine's step budget: 3 epochs' worth
    _epochs(progress, clock, epochs=1)
    text = buf.getvalue()
    assert "job 3/12  epoch 1/1" in text and "ETA job 20s" in text, text[-500:]  # 200 steps left at 10/s


def test_sweep_position_reads_hydra_and_the_sweep_size(tmp_path: Path) -> None:
    """`job N/M` from Hydra's job number inside a multirun job (the sweep callback sets M)."""
    code = (
        "import hydra, os\n"
        "from hairlab.training.progress import sweep_position\n"
        "@hydra.main(version_base=None, config_path=None)\n"
        "def main(cfg):\n"
        "    print('POS', sweep_position())\n"
        "main()\n"
    )
    script = tmp_path / "app.py"
    script.write_text(code)
    env = {**os.environ, "HAIRLAB_SWEEP_JOBS": "3"}
    res = subprocess.run([sys.executable, str(script), "-m", "+x=1,2,3"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert [ln for ln in res.stdout.splitlines() if ln.startswith("POS")] == ["POS job 1/3", "POS job 2/3",
                                                                              "POS job 3/3"]
    res = subprocess.run([sys.executable, str(script), "+x=1"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert "POS None" in res.stdout, res.stdout  # a single run has no position


def test_a_piped_run_prints_plain_progress_and_unwrapped_lines(tmp_path: Path) -> None:
    res = run_cli(["run", "dataset=synthetic", "dataset.train_size=64", "dataset.test_size=32", "tracking=local",
                   "trainer.batch_size=16", "trainer.max_steps=4", "trainer.log_every=1", "trainer.threads=1",
                   "hw_targets=[]"], cwd=tmp_path, env={"COLUMNS": "80", "HAIRLAB_PROGRESS_S": "0"})
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stderr.splitlines()
    assert any(ln.startswith("epoch 1/1  step 1/4  loss ") and "ETA job" in ln for ln in lines), res.stderr
    assert any(len(ln) > 80 for ln in lines), "the summary lines are not wrapped at 80 columns"
    assert "\x1b[" not in res.stderr
