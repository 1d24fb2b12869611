"""Task runner: `nox` runs the CI set (lint, tests, wheel, e2e); `nox -s demo` runs the main job.

On the development machines a CPU build of torch is installed from a local wheel
(`torch==2.13.0`); set HAIRLAB_TORCH to another pip spec elsewhere (e.g. "torch" for the
default build). The package itself only asks for `torch>=2.2`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
TORCH = os.environ.get("HAIRLAB_TORCH", "torch==2.13.0")
SHARED_DATA = ROOT.parent / "shared" / "data"

nox.options.sessions = ["lint", "tests", "wheel", "e2e"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


def _install(session: nox.Session, *extras: str, editable: bool = True) -> None:
    session.install(TORCH)  # first, so the package's open `torch>=2.2` is already satisfied
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec) if editable else session.install(spec)


def _data_env() -> dict[str, str]:
    """Point hairlab at the shared CIFAR-10 copy when it is there (development machines, CI)."""
    if "HAIRLAB_DATA" not in os.environ and SHARED_DATA.is_dir():
        return {"HAIRLAB_DATA": str(SHARED_DATA)}
    return {}


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree; mypy over the core package (settings in pyproject's [tool.mypy]).

    hairlab is installed first so mypy sees the real types of omegaconf, torch and the rest.
    """
    session.install("ruff>=0.5", "mypy>=1.10")
    session.run("ruff", "check", ".")
    _install(session)
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The full suite, slow real-data tests included (pass `-- -m "not slow"` for the fast set).

    The `slurm` extra brings submitit, whose local executor the fault suite sweeps with; the
    `search` extra the Optuna sweeper that tests/test_search.py runs studies with.
    """
    _install(session, "dev", "slurm", "search")
    args = session.posargs or ["-m", "not e2e"]
    session.run("pytest", *args, env=_data_env())


@nox.session
def e2e(session: nox.Session) -> None:
    """Real mlflow server + real headless Chromium looking at the MLflow UI (needs `chromium`)."""
    import shutil

    if os.environ.get("CI") and not (shutil.which("chromium") or shutil.which("chromium-browser")):
        session.error("CI needs Debian's chromium for the UI check: apt-get install chromium")
    _install(session, "dev")
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    session.run("pytest", "-m", "e2e", "--basetemp", str(out / "e2e-tmp"), *session.posargs,
                env={**_data_env(), "HAIRLAB_TEST_OUTPUT": str(out)})


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it (not editable) in a fresh venv, smoke-run from outside the tree."""
    session.install("build")
    dist = ROOT / "dist"
    session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT))
    wheels = sorted(dist.glob("hairlab-*.whl"), key=lambda p: p.stat().st_mtime)
    session.install(TORCH)
    session.install(str(wheels[-1]))
    tmp = Path(session.create_tmp()).resolve()  # relative to the root; used after the chdir below
    session.chdir(tmp)
    session.run("hairlab", "--version")
    session.run("hairlab", "plugins")
    session.run("hairlab", "list", "blocks")
    session.run("hairlab", "run", "dataset=synthetic", "dataset.train_size=64", "dataset.test_size=32",
                "trainer.epochs=1", "trainer.max_steps=2", "trainer.batch_size=32", "tracking=local")
    report = tmp / "hw-report.csv"  # a file, not 67 rows of CSV in the test log
    session.run("hairlab", "hw-report", "model=hairnet_imagenet", "hardware=paper2012", "--format", "csv",
                "--output", str(report))
    rows = report.read_text().splitlines()
    if len(rows) < 2:
        session.error(f"hw-report wrote {len(rows)} line(s) to {report}")
    session.log(f"hw-report: {len(rows) - 1} rows in {report}")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: the paper's Adam-vs-SGD sweep on real CIFAR-10, logged to ./mlflow.db."""
    _install(session, "dev")
    args = session.posargs or ["+experiment=adam_vs_sgd"]
    session.run("hairlab", "run", *args, env=_data_env())


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark in tests/benchmarks/, each a ratio to a baseline measured in the same run.

    bench_hw_validation (the host model against this CPU on the zoo, nn-Meter's metric, 3-6
    minutes) writes its table to test-output/hw_validation.md (+ .json), its default.
    """
    _install(session, "dev")
    results = {}
    for script in sorted((ROOT / "tests" / "benchmarks").glob("bench_*.py")):
        if session.posargs and not any(p in script.name for p in session.posargs):
            continue
        out = session.run("python", str(script), silent=True, env=_data_env())
        try:
            results[script.stem] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError, AttributeError):
            results[script.stem] = {"raw": out}
        print(json.dumps({script.stem: results[script.stem]}, indent=1), file=sys.stderr)
    path = ROOT / "test-output" / "bench.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    session.log(f"wrote {path}")
