"""CLI benchmarks: ``hairlab --help`` start-up, and the per-job cost of a sweep.

Run: ``python tests/benchmarks/bench_cli.py [--reps N]``. Prints one JSON object (last line).

- ``help``: wall time of ``hairlab --help`` against ``python -c "import hydra, typer"`` (the
  floor for any typer + Hydra CLI), median of ``--reps`` runs each, and their ratio.
- ``sweep``: per-job cost of ``hairlab run -m`` with 8 tiny jobs (a job function that logs one
  metric, so only orchestration and tracking are measured), as (T(8 jobs) - T(1 job)) / 7,
  with tracking=local and tracking=mlflow (a warm SQLite store), against the same 8 jobs in a
  bare ``@hydra.main`` app measured the same way (Hydra's own per-job cost).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
JOBS = 8

BARE_HYDRA_APP = '''
import hydra


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    return None


if __name__ == "__main__":
    main()
'''


def noop_job(cfg: Any, tracker: Any) -> float:
    """The tiny job of the sweep benchmark: log one metric, like the smallest real job."""
    tracker.log_metrics({"bench/value": float(cfg.get("seed", 0))}, step=0)
    return 0.0


def _timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"benchmark command failed ({' '.join(cmd)}):\n{res.stderr[-2000:]}")
    return elapsed


def _median(cmd: list[str], cwd: Path, reps: int, env: dict[str, str] | None = None) -> float:
    return statistics.median(_timed(cmd, cwd, env) for _ in range(reps))


def hairlab_cmd() -> list[str]:
    """The console script a user runs, else ``python -m hairlab``."""
    script = Path(sys.executable).with_name("hairlab")
    if script.exists():
        return [str(script)]
    found = shutil.which("hairlab")
    return [found] if found else [sys.executable, "-m", "hairlab"]


def bench_help(reps: int, cwd: Path) -> dict[str, float]:
    baseline = _median([sys.executable, "-c", "import hydra, typer"], cwd, reps)
    help_s = _median([*hairlab_cmd(), "--help"], cwd, reps)
    return {"help_s": round(help_s, 3), "import_hydra_typer_s": round(baseline, 3),
            "ratio_to_import_hydra_typer": round(help_s / baseline, 2)}


def _seeds(n: int) -> str:
    return "seed=" + ",".join(str(i) for i in range(n))


def _per_job(make_cmd: Any, cwd: Path, reps: int, env: dict[str, str] | None = None) -> dict[str, float]:
    one = _median(make_cmd(1), cwd, reps, env)
    many = _median(make_cmd(JOBS), cwd, reps, env)
    return {"one_job_s": round(one, 3), f"{JOBS}_jobs_s": round(many, 3),
            "per_job_s": round((many - one) / (JOBS - 1), 4)}


def bench_sweep(reps: int, cwd: Path) -> dict[str, Any]:
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    app = cwd / "bare_hydra_app.py"
    app.write_text(BARE_HYDRA_APP)
    bare = _per_job(lambda n: [sys.executable, str(app), "-m", f"+{_seeds(n)}"], cwd, reps)
    task = "task=bench_cli:noop_job"

    def hairlab(tracking: list[str]) -> Any:
        return lambda n: [*hairlab_cmd(), "run", "-m", task, _seeds(n), *tracking]

    local = _per_job(hairlab(["tracking=local"]), cwd, reps, env)
    uri = f"sqlite:///{cwd / 'bench.db'}"
    mlflow_args = [f"tracking.uri={uri}", "tracking.log_artifacts=false", "tracking.plots=false"]
    _timed(hairlab(mlflow_args)(1), cwd, env)  # create the store (schema migration) once, untimed
    tracked = _per_job(hairlab(mlflow_args), cwd, reps, env)
    return {
        "jobs": JOBS,
        "bare_hydra": bare,
        "hairlab_local": local,
        "hairlab_mlflow": tracked,
        "local_per_job_ratio_to_bare_hydra": round(local["per_job_s"] / bare["per_job_s"], 2),
        "mlflow_per_job_ratio_to_bare_hydra": round(tracked["per_job_s"] / bare["per_job_s"], 2),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_1min": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs per measurement (median taken)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hairlab-bench-cli-") as tmp:
        cwd = Path(tmp)
        result = {"machine": machine(), "help": bench_help(max(args.reps, 5), cwd),
                  "sweep": bench_sweep(args.reps, cwd)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
