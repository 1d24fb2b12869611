"""What a run is tagged with, and what it is called, from the Hydra job it belongs to."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Written by the sweep callback into the sweep directory; jobs read it to find their parent.
SWEEP_FILE = "hairlab_sweep.json"
MAX_RUN_NAME = 250


@dataclass
class SweepState:
    """Everything a job of a tracked sweep needs to log under the sweep's parent run."""

    uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    sweep_id: str
    sweep_dir: str
    swept_keys: list[str] = field(default_factory=list)

    def save(self) -> Path:
        path = Path(self.sweep_dir) / SWEEP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, sweep_dir: str | Path) -> SweepState | None:
        path = Path(sweep_dir) / SWEEP_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))


@dataclass
class JobContext:
    """The parts of ``HydraConfig`` that tracking cares about."""

    job_dir: Path
    base_dir: Path
    overrides: list[str]
    job_num: int | None = None
    multirun: bool = False
    sweep_dir: Path | None = None
    choices: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hydra(cls) -> JobContext:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        choices: Any = OmegaConf.to_container(hc.runtime.choices, resolve=True) if hc.runtime.choices else {}
        base_dir = Path(hc.runtime.cwd)
        sweep_dir = None
        if multirun:
            sweep_dir = Path(str(hc.sweep.dir))
            sweep_dir = sweep_dir if sweep_dir.is_absolute() else (base_dir / sweep_dir).resolve()
        return cls(
            job_dir=Path(hc.runtime.output_dir),
            base_dir=base_dir,
            overrides=[str(o) for o in hc.overrides.task],
            job_num=int(hc.job.num) if multirun and hc.job.get("num") is not None else None,  # type: ignore[attr-defined]
            multirun=multirun,
            sweep_dir=sweep_dir,
            choices=dict(choices or {}),
        )


def override_key(override: str) -> str:
    """``+optimizer.lr=0.1`` -> ``optimizer.lr``."""
    return override.split("=", 1)[0].lstrip("+~")


def run_name(overrides: list[str], swept_keys: list[str] | None = None, job_num: int | None = None) -> str:
    """A readable run name: the swept overrides (``optimizer=sgd,optimizer.lr=0.1``).

    Outside a sweep, or when nothing was swept, all the job's overrides; with none at all,
    ``job<N>`` or ``run``.
    """
    relevant = [o for o in overrides if not override_key(o).startswith("hydra.")]
    if swept_keys:
        swept = [o for o in relevant if override_key(o) in set(swept_keys)]
        relevant = swept or relevant
    fallback = f"job{job_num}" if job_num is not None else "run"
    name = ",".join(o.replace("\\", "") for o in relevant) or fallback
    return name if len(name) <= MAX_RUN_NAME else name[: MAX_RUN_NAME - 3] + "..."


def git_commit(directory: str | Path) -> str | None:
    """The commit checked out at ``directory``, or None outside a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=str(directory),
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) >= 7 else None


def base_tags(base_dir: str | Path) -> dict[str, str]:
    """Tags every hairlab run carries: versions of hairlab and each plugin, the git commits (code, project)."""
    from hairlab import __version__
    from hairlab.plugin_manager import get_host
    from hairlab.tracking.environment import git_tags

    tags = {
        "hairlab.version": __version__,
        "mlflow.source.name": "hairlab run",
        "mlflow.source.type": "LOCAL",
    }
    tags.update(git_tags(base_dir))  # hairlab's commit and dirty flag, and the project's when it differs
    try:
        for dist, version in sorted(get_host().distributions().items()):
            tags[f"hairlab.plugin.{dist}"] = version or "unknown"
    except Exception as exc:  # noqa: BLE001 - plugin trouble is reported by `hairlab plugins`
        tags["hairlab.plugins_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return tags


def user_tags(value: Any) -> dict[str, str]:
    """The config's ``tags`` as MLflow tags: ``[baseline, "owner:ana"]`` -> ``{baseline: true, owner: ana}``.

    As in lightning-hydra-template, ``tags`` is a list of strings; a string ``key:value`` (or
    ``key=value``) sets that tag to that value, any other string is a tag set to ``true``. A
    mapping is taken as tag -> value. Anything else is refused with the fix.
    """
    from collections.abc import Mapping

    from hairlab.errors import HairlabError

    if value is None:
        return {}
    if hasattr(value, "items") or isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):
        raise HairlabError(f"tags={value!r}: expected a list, e.g. tags=[{value}] or tags='[a,owner:ana]'")
    else:
        try:
            items = list(value)
        except TypeError:
            raise HairlabError(f"tags={value!r}: expected a list of strings, e.g. tags='[baseline,owner:ana]'") \
                from None
        pairs = []
        for item in items:
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise HairlabError(f"tags: {item!r} is not a string; write tags as strings, "
                                   "e.g. tags='[baseline,owner:ana]'")
            text = str(item).strip()
            key, sep, val = text.partition(":") if ":" in text else text.partition("=")
            pairs.append((key.strip(), val.strip() if sep else "true"))
    tags: dict[str, str] = {}
    for key, val in pairs:
        if not key or key.startswith("mlflow.") or key.startswith("hairlab."):
            raise HairlabError(f"tags: {key!r} is not a tag name you can set (empty, or reserved mlflow.*/hairlab.*); "
                               "use a plain name such as baseline or owner:ana")
        if len(key) > 250:
            raise HairlabError(f"tags: the name {key[:40]!r}... is longer than MLflow's 250 characters")
        tags[key] = "true" if val is True else "false" if val is False else str(val)
    return tags


def job_tags(ctx: JobContext, sweep: SweepState | None) -> dict[str, str]:
    """The tags of one job's run."""
    tags = base_tags(ctx.base_dir)
    tags["hairlab.overrides"] = ",".join(ctx.overrides)
    tags["hairlab.job_dir"] = str(ctx.job_dir)
    if ctx.job_num is not None:
        tags["hairlab.job_num"] = str(ctx.job_num)
    if sweep is not None:
        tags["mlflow.parentRunId"] = sweep.parent_run_id
        tags["hairlab.sweep_id"] = sweep.sweep_id
    return tags
