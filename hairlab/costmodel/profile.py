"""``task=profile``: no training, just what the model costs, logged like a training run's metrics.

``hairlab run task=profile model=hairnet_imagenet`` logs ``model/params`` and, for every
target in ``hw_targets`` plus the configured ``hardware`` (with its overrides), the
``hw/<target>/*`` metrics, and writes each target's full report as JSON into the job directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hairlab.plugin_manager import PluginHost
    from hairlab.tracking.base import Tracker


def profile_job(cfg: Any, tracker: Tracker, host: PluginHost | None = None) -> dict[str, float]:
    """Cost the configured model on the configured targets; returns the metrics logged."""
    from hairlab.costmodel.api import _host, report_metrics, resolve_targets, target_defaults, target_from_config
    from hairlab.costmodel.engine import estimate
    from hairlab.costmodel.layers import extract_layers
    from hairlab.costmodel.render import to_json
    from hairlab.models import build_model, count_parameters, model_input_shape

    host = _host(host)
    shape = model_input_shape(cfg.model)
    model = build_model(cfg.model, host)
    name = str(cfg.model.get("name", "model"))
    targets = resolve_targets(cfg, host)
    if cfg.get("hardware") is not None:
        targets[str(cfg.hardware.name)] = cfg.hardware  # the composed config, overrides included
    # under profile.*: the flattened job config already holds task, hw_targets and model.*
    tracker.log_params({"profile.model": name, "profile.input_shape": list(shape),
                        "profile.targets": ",".join(targets)})
    metrics: dict[str, float] = {"model/params": float(count_parameters(model))}
    out_dir = _output_dir()
    traced: dict[tuple[int, ...], Any] = {}
    for tname, node in targets.items():
        target = target_from_config(node if node is not None else target_defaults(tname, host), host)
        run_shape = target.input_size or shape
        if run_shape not in traced:
            traced[run_shape] = extract_layers(model, run_shape)
        report = estimate(traced[run_shape], target, model=name, input_shape=run_shape)
        metrics.update(report_metrics(tname, report, target.batch_size))
        if out_dir is not None:
            path = out_dir / f"hw_report_{tname}.json"
            path.write_text(to_json(report))
            tracker.log_artifact(path, "hw")
    tracker.log_metrics(metrics, step=0)
    return metrics


def _output_dir() -> Path | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - called outside a Hydra job (tests): no artifacts
        return None
