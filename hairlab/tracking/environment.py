"""The environment a run ran in, as tags: Python, torch and its CUDA, the CPU, and the code's git state.

A timing means little without the machine (the same loop ran at 525 img/s on one CPU and 850
on another), and a result means little without the code: so every training run records the
CPU model, the core count, torch's build, and the git commit of the code that ran (hairlab's
own checkout, with a dirty flag), plus the commit of the working directory's project when that
is another repository (a user's project that installs hairlab). Each git state is read once
per process; torch is only read when the job has imported it already or is about to.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Where hairlab's own source lives (a git checkout when installed editable).
SOURCE_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GitState:
    """A work tree's top level, HEAD commit and whether tracked files differ from it."""

    toplevel: str
    commit: str
    dirty: bool


def _git(directory: str, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(directory: str) -> GitState | None:
    """The git state of the work tree holding ``directory``; None outside one (or without git).

    Dirty means a tracked file is modified or staged; untracked files do not count (as in
    ``git describe --dirty``).
    """
    head = _git(directory, "rev-parse", "--show-toplevel", "HEAD")
    if head is None:
        return None
    lines = head.split()
    if len(lines) != 2 or len(lines[1]) < 7:
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return GitState(toplevel=lines[0], commit=lines[1], dirty=bool(status and status.strip()))


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask under SLURM/containers), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def torch_tags() -> dict[str, str]:
    """torch's version and the CUDA (or ROCm) it was built with; ``none`` for a CPU build."""
    import torch

    cuda = torch.version.cuda or (f"rocm {torch.version.hip}" if getattr(torch.version, "hip", None) else "none")
    tags = {"hairlab.env.torch": torch.__version__, "hairlab.env.torch_cuda": cuda}
    if cuda != "none" and torch.cuda.is_available():
        tags["hairlab.env.gpu"] = torch.cuda.get_device_name(0)
        tags["hairlab.env.gpu_count"] = str(torch.cuda.device_count())
    return tags


def git_tags(base_dir: str | Path) -> dict[str, str]:
    """The commit (and dirty flag) of hairlab's code, and of the project in ``base_dir`` when it differs.

    ``mlflow.source.git.commit`` (the UI's "Source" commit) is the project's when there is one,
    else hairlab's.
    """
    tags: dict[str, str] = {}
    code = git_state(str(SOURCE_DIR))
    if code is not None:
        tags["hairlab.git_commit"] = code.commit
        tags["hairlab.git_dirty"] = "true" if code.dirty else "false"
    project = git_state(str(Path(base_dir).resolve()))
    if project is not None and (code is None or project.toplevel != code.toplevel):
        tags["hairlab.project.git_commit"] = project.commit
        tags["hairlab.project.git_dirty"] = "true" if project.dirty else "false"
        tags["hairlab.project.dir"] = project.toplevel
    source = project or code
    if source is not None:
        tags["mlflow.source.git.commit"] = source.commit
    return tags


def environment_tags(*, with_torch: bool = True) -> dict[str, str]:
    """Python, platform, CPU model and count (and torch, unless ``with_torch=False``)."""
    tags = {
        "hairlab.env.python": platform.python_version(),
        "hairlab.env.platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "hairlab.env.cpu": cpu_model(),
        "hairlab.env.cpu_count": str(cpu_count()),
    }
    if with_torch:
        try:
            tags.update(torch_tags())
        except Exception as exc:  # noqa: BLE001 - a broken torch is the job's error to report, not this tag's
            tags["hairlab.env.torch"] = f"unavailable ({type(exc).__name__})"
    if sys.executable:
        tags["hairlab.env.python_exe"] = sys.executable
    return tags
