"""The tracker of one Hydra job, chosen by the ``tracking`` config group."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hairlab.errors import HairlabError
from hairlab.tracking.base import LocalTracker, Tracker

log = logging.getLogger(__name__)

BACKENDS = ("mlflow", "local")


def tracking_settings(cfg: Any) -> dict[str, Any]:
    """The ``tracking`` node as a plain dict (``backend: local`` when absent)."""
    from hairlab.contract import to_dict

    node = cfg.get("tracking") if hasattr(cfg, "get") else None
    if node is None:
        return {"backend": "local"}
    data = to_dict(node)
    backend = str(data.get("backend", "local"))
    if backend not in BACKENDS:
        raise HairlabError(f"unknown tracking backend '{backend}'; choose tracking=mlflow or tracking=local")
    return data


@dataclass
class Location:
    """Where a job's run goes: the store, its experiment, and the sweep's parent (if any)."""

    uri: str
    client: Any
    experiment_id: str
    sweep: Any = None


def create_tracker(cfg: Any, tags: dict[str, str] | None = None, where: Location | None = None) -> Tracker:
    """A tracker for the current Hydra job (call inside a job); ``tags`` are added to the run's.

    ``where`` is the store already opened for this job (the runner's :func:`locate`), so the
    store is not opened twice.
    """
    from hairlab.tracking.context import JobContext

    settings = tracking_settings(cfg)
    ctx = JobContext.from_hydra()
    if settings["backend"] == "local":
        from hairlab.tracking.context import user_tags

        tracker = LocalTracker(ctx.job_dir)
        tracker.set_tags({**user_tags(cfg.get("tags")), **(tags or {})})
        return tracker
    return open_mlflow_run(cfg, settings, ctx, where or locate(cfg, settings, ctx), tags)


def locate(cfg: Any, settings: dict[str, Any], ctx: Any) -> Location:
    """The store and experiment of the current job (the sweep's, inside a tracked sweep)."""
    from hairlab.tracking import store
    from hairlab.tracking.context import SweepState

    sweep = SweepState.load(ctx.sweep_dir) if ctx.multirun and ctx.sweep_dir is not None else None
    uri = sweep.uri if sweep is not None else store.resolve_uri(settings.get("uri"), ctx.base_dir)
    store.check_server(uri)
    try:
        client = store.client(uri)
        if sweep is not None:
            experiment_id = sweep.experiment_id
        else:
            experiment_id = store.ensure_experiment(client, store.experiment_name(cfg, ctx.choices), uri)
    except HairlabError:
        raise
    except Exception as exc:
        raise HairlabError(
            f"cannot open the MLflow store {uri}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]} "
            "(check tracking.uri / $MLFLOW_TRACKING_URI, or use tracking=local)"
        ) from exc
    return Location(uri, client, experiment_id, sweep)


def open_mlflow_run(cfg: Any, settings: dict[str, Any], ctx: Any, where: Location,
                    extra_tags: dict[str, str] | None = None) -> Tracker:
    """Create the job's MLflow run (a child of the sweep's parent run, in a tracked sweep)."""
    from hairlab.tracking import liveness, store
    from hairlab.tracking.context import job_tags, run_name, user_tags
    from hairlab.tracking.environment import environment_tags
    from hairlab.tracking.mlflow_tracker import MLflowTracker
    from hairlab.tracking.params import config_params

    sweep = where.sweep
    swept = sweep.swept_keys if sweep else None
    name = settings.get("run_name") or run_name(ctx.overrides, swept, ctx.job_num)
    training = str(cfg.get("task", "train")) == "train"
    tags = {**user_tags(cfg.get("tags")), **job_tags(ctx, sweep), **environment_tags(with_torch=training),
            **(extra_tags or {}), **liveness.owner_tags()}
    client, uri = where.client, where.uri
    try:
        run = store.retrying(lambda: client.create_run(where.experiment_id, run_name=str(name), tags=tags))
    except HairlabError:
        raise
    except Exception as exc:
        raise HairlabError(
            f"cannot create an MLflow run in {uri}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]} "
            "(check tracking.uri / $MLFLOW_TRACKING_URI, or use tracking=local)"
        ) from exc
    tracker = MLflowTracker(
        client,
        run.info.run_id,
        flush_interval_s=float(settings.get("flush_interval_s", 2.0)),
        heartbeat_s=float(settings.get("heartbeat_s", 30.0)),
        job_dir=ctx.job_dir,
        upload_artifacts=bool(settings.get("log_artifacts", True)),
        plots=bool(settings.get("plots", True)),
        log_checkpoint=bool(settings.get("log_checkpoint", False)),
        uri=uri,
        system_metrics=start_system_metrics(run.info.run_id, uri, settings) if training else None,
    )
    tracker.sweep = sweep  # type: ignore[attr-defined]
    try:
        _write_resolved_config(cfg, ctx.job_dir)
        tracker.log_params(config_params(cfg))
    except Exception as exc:  # the caller never gets this tracker: end its run (and monitor) here
        tracker.record_error(exc)
        tracker.close("FAILED")
        raise
    tracker.flush()
    log.info("MLflow run %s (%s) in %s", run.info.run_id, name, uri)
    return tracker


def start_system_metrics(run_id: str, uri: str, settings: dict[str, Any]) -> Any:
    """MLflow's system-metrics monitor for ``run_id`` (``system/*`` metrics), started; None when off.

    Its own thread samples CPU, memory, disk, network (and NVIDIA/AMD GPUs when their
    libraries are installed) every ``tracking.system_metrics_interval_s``; the tracker stops it
    at close. A failure to start costs the run its system metrics, never the run.
    """
    if not settings.get("system_metrics", True):
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines per run
        monitor = SystemMetricsMonitor(run_id, sampling_interval=float(settings.get("system_metrics_interval_s", 10.0)),
                                       tracking_uri=uri)
        monitor.start()
    except Exception as exc:  # noqa: BLE001 - e.g. psutil missing: say so once, train anyway
        log.warning("no system metrics for run %s: %s: %s", run_id, type(exc).__name__, exc)
        return None
    return monitor


def _write_resolved_config(cfg: Any, job_dir: Path) -> None:
    from omegaconf import OmegaConf

    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - fall back to the config as written
        text = OmegaConf.to_yaml(cfg)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "resolved_config.yaml").write_text(text)
