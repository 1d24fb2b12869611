"""The whole composed config checked before anything runs: no data loaded, no store, no run.

:func:`check_config` is called right after Hydra composes a job's config (the task function,
before the tracker exists); :func:`check_sweep` composes and checks every job of a basic-sweeper
multirun before its first job starts (the sweep callback's ``on_multirun_start``). A bad value
is one :class:`~hairlab.errors.HairlabError` line naming the key, the value, what was expected,
and the entry and plugin that own the option. :func:`check_data` runs a dataset entry's own
``preflight`` (the data is there, or fetched now) at the same two points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hairlab.contract.convert import to_dict
from hairlab.contract.entries import GROUPS, settings, validate
from hairlab.errors import HairlabError

if TYPE_CHECKING:
    from hairlab.plugin_manager import PluginHost


def _node(cfg: Any, key: str) -> Any:
    """``cfg[key]`` resolved to plain values; an interpolation error names the key."""
    try:
        value = cfg.get(key) if hasattr(cfg, "get") else None
        if value is None:
            return None
        return to_dict(value) if hasattr(value, "items") else value
    except HairlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - OmegaConf resolution errors
        from hairlab.hydra_app import describe_config_error

        raise HairlabError(f"{key}: {describe_config_error(exc)}") from None


def _task_overrides(cfg: Any) -> list[str]:
    """The job's command-line overrides (``hydra.overrides.task``), when known."""
    try:
        hydra = cfg.get("hydra") if hasattr(cfg, "get") else None
        if hydra is not None:
            return [str(o) for o in hydra.overrides.task]
        from hydra.core.hydra_config import HydraConfig

        return [str(o) for o in HydraConfig.get().overrides.task]
    except Exception:  # noqa: BLE001 - outside a Hydra app: no overrides known
        return []


def check_chosen(cfg: Any, host: PluginHost, overrides: list[str] | None = None) -> None:
    """A group option the command line asked for but Hydra dropped is an unknown entry, not silence.

    An ``optional`` default (``- optional hardware: paper2012``) that the command line points at a
    missing option (``hardware=nope``) leaves the group out without a word. The default itself
    may be missing (its plugin disabled): that is what ``optional`` is for.
    """
    for override in _task_overrides(cfg) if overrides is None else overrides:
        key, sep, value = override.partition("=")
        group = key.lstrip("+")
        kind = next((k for k, g in GROUPS.items() if g == group), None)
        if not sep or kind is None or key.startswith("~") or value in ("", "null"):
            continue
        present = cfg.get(group) if hasattr(cfg, "get") else None
        if present is None:
            for name in value.split(","):  # a sweep's list, when checked as a whole
                host.registry(kind).get(name.strip())


def check_config(cfg: Any, host: PluginHost) -> None:
    """Check every group of a composed config against its schema; raises one-line HairlabError."""
    from hairlab.models.builder import plan_model
    from hairlab.tracking.settings import TrackingConfig
    from hairlab.training.config import EngineConfig

    nodes = {key: _node(cfg, key) for key in ("model", "optimizer", "dataset", "hardware", "trainer",
                                               "tracking")}
    check_chosen(cfg, host)
    for kind, group in GROUPS.items():
        if nodes[group] is not None:
            validate(host, kind, nodes[group], where=group)
    if nodes["trainer"] is not None:
        settings(EngineConfig, nodes["trainer"], where="trainer")
    if nodes["tracking"] is not None:
        settings(TrackingConfig, nodes["tracking"], where="tracking")
    if nodes["model"] is not None:
        model = nodes["model"]
        data = nodes["dataset"] or {}
        classes = model.get("num_classes") or data.get("num_classes") or 1
        shape = None if model.get("input_shape") else (3, 32, 32)  # a training run takes the data's
        plan_model(model, host, num_classes=classes if isinstance(classes, int) else None, input_shape=shape)
    seed = cfg.get("seed") if hasattr(cfg, "get") else None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise HairlabError(f"seed={seed!r}: expected int (the training seed); set e.g. seed=0")
    if hasattr(cfg, "get"):
        from hairlab.tracking.context import user_tags

        user_tags(cfg.get("tags"))  # a bad `tags` value is refused before any run (one line, with the fix)
    targets = cfg.get("hw_targets") if hasattr(cfg, "get") else None
    names = [targets] if isinstance(targets, str) else list(targets or [])
    hardware = host.registry("hardware")
    for name in names:
        if str(name) != "auto":  # auto: the composed hardware target, when its plugin is loaded
            hardware.get(str(name))


def check_data(cfg: Any, host: PluginHost, seen: set[str] | None = None) -> None:
    """The dataset's pre-flight (its files found, or fetched now) for a training job, before any run.

    :func:`check_config` checks the values; this checks what they point at, so a missing dataset
    is one line before the sweep's parent run or any job's run exists, not a FAILED run per job.
    ``seen`` holds the dataset configs already checked (a sweep's jobs mostly share one).
    """
    import json

    task = cfg.get("task", "train") if hasattr(cfg, "get") else "train"
    node = _node(cfg, "dataset")
    if task != "train" or not node:
        return
    key = json.dumps(node, sort_keys=True, default=str)
    if seen is not None:
        if key in seen:
            return
        seen.add(key)
    entry, opts = validate(host, "datasets", node, where="dataset")
    if entry.preflight is not None:
        from hairlab.contract.entries import guarded

        preflight = entry.preflight
        guarded(entry, "datasets", host, "failed its pre-flight check", lambda: preflight(**opts))


def sweep_jobs(config: Any) -> list[list[str]] | None:
    """The override list of every job a basic-sweeper multirun will launch; None for other sweepers."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.get("sweeper") or {}
    target = str(sweeper.get("_target_", ""))
    if not target.endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments = params + list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    jobs: list[list[str]] = []
    for batch in BasicSweeper.split_arguments(parsed, None):
        jobs.extend(list(job) for job in batch)
    return jobs


#: Launchers whose jobs run on this machine, so the data this process sees is the data they see.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher")


def runs_here(config: Any) -> bool:
    """Whether the multirun's launcher runs its jobs on this machine (not SLURM, not a Ray cluster).

    A cluster job may read data that only its node sees (node-local scratch), so its data is
    checked in the job, before its run, and not by the process that submits it.
    """
    launcher = config.hydra.get("launcher") or {}
    return str(launcher.get("_target_", "")).endswith(LOCAL_LAUNCHERS)


def check_sweep(config: Any, host: PluginHost) -> None:
    """Compose and check every job of a basic-sweeper multirun before the first one starts.

    ``config`` is the multirun's config as Hydra's ``on_multirun_start`` receives it. Other
    sweepers (optuna, ...) choose their jobs as they go: each job is checked when it starts.
    The data is checked here only for a launcher that runs the jobs on this machine
    (:func:`runs_here`); each job checks its own again before its run.
    """
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    jobs = sweep_jobs(config)
    if not jobs or not GlobalHydra.instance().is_initialized():
        return
    name = config.hydra.job.get("config_name") or "config"
    hydra_overrides = [o for o in config.hydra.overrides.hydra if o.split("=", 1)[0].startswith("hydra.searchpath")]
    common = set(jobs[0]).intersection(*jobs[1:]) if len(jobs) > 1 else set()
    datasets: set[str] | None = set() if runs_here(config) else None
    for i, overrides in enumerate(jobs):
        label = " ".join(o for o in overrides if o not in common) or " ".join(overrides) or "no overrides"
        try:
            job_cfg = compose(config_name=name, overrides=[*hydra_overrides, *overrides], return_hydra_config=True)
            check_config(job_cfg, host)
            if datasets is not None:
                check_data(job_cfg, host, datasets)
        except HairlabError as exc:
            raise HairlabError(f"sweep job {i} ({label}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a composition error of one job
            from hairlab.hydra_app import describe_config_error

            raise HairlabError(f"sweep job {i} ({label}): {describe_config_error(exc)}") from None
