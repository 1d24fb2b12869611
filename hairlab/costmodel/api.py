"""Entry points other parts of hairlab use: targets from configs, and per-run latency metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hairlab.errors import HairlabError

if TYPE_CHECKING:
    from hairlab.costmodel.target import Target
    from hairlab.plugin_manager import PluginHost

log = logging.getLogger(__name__)

#: ``hw_targets: auto``: the composed ``hardware`` target, when its plugin is loaded.
AUTO = "auto"


def _host(host: PluginHost | None) -> PluginHost:
    if host is not None:
        return host
    from hairlab.plugin_manager import get_host  # callers not yet passing their host

    return get_host()


def target_from_config(hw_cfg: Any, host: PluginHost | None = None, **overrides: Any) -> Target:
    """A :class:`~hairlab.costmodel.target.Target` from a ``hardware`` config group node.

    Built through the one build path (schema check, then the factory), so a bad value or an
    unknown key is one line naming the target and its plugin.
    """
    from hairlab.contract import build, to_dict

    options = to_dict(hw_cfg)
    if not options.get("name"):
        raise HairlabError("the hardware config has no 'name'; choose a target with hardware=NAME "
                           "(see `hairlab list hardware`)")
    options.update(overrides)
    target: Target = build(_host(host), "hardware", options, where="hardware")
    return target


def resolve_targets(cfg: Any, host: PluginHost) -> dict[str, Any]:
    """The targets a job reports on: name -> config node (None = the target's default config).

    ``hw_targets`` lists names; ``auto`` (the default) means the composed ``hardware`` group,
    overrides included, when its entry is loaded, and no target otherwise, so disabling the
    hardware plugin never breaks a training run. Explicit names must exist.
    """
    raw = cfg.get("hw_targets", AUTO)
    names = [raw] if isinstance(raw, str) else list(raw or [])
    hardware = cfg.get("hardware")
    hw_name = str(hardware.get("name")) if hardware is not None and hardware.get("name") else None
    out: dict[str, Any] = {}
    for name in (str(n) for n in names):
        if name == AUTO:
            if hw_name is not None and hw_name in host.registry("hardware"):
                out[hw_name] = hardware
            continue
        out[name] = hardware if name == hw_name else None
    return out


def target_defaults(name: str, host: PluginHost | None = None) -> dict[str, Any]:
    """The default config of target ``name``: its entry's schema defaults, filled by the build path.

    A name in ``hw_targets`` is an entry; to report on a preset or with overrides, select it as
    the ``hardware`` group (``hw_targets: auto`` uses the composed node). Nothing is composed
    here, which would reset a Hydra app already running (a training job).
    """
    _host(host).registry("hardware").get(str(name))  # an unknown name: one line, alternatives listed
    return {"name": str(name)}


def latency_metrics(model: Any, input_shape: tuple[int, ...], targets: list[str] | Mapping[str, Any],
                    host: PluginHost | None = None) -> dict[str, float]:
    """Predicted cost of ``model`` on each target, as tracker metrics.

    ``targets``: names (each built from its default config) or, as :func:`resolve_targets`
    gives, name -> config node (None = default config). One traced forward of one image,
    then the engine per target. Targets needing a calibration that is not cached are
    skipped with a warning rather than measured here. Keys: ``hw/<target>/latency_s``,
    ``.../transfer_s``, ``.../compute_s``, ``.../flops``, ``.../macs``, ``.../params``.
    """
    from hairlab.costmodel.calibrate import CalibrationUnavailable, cached_only
    from hairlab.costmodel.engine import estimate
    from hairlab.costmodel.layers import extract_layers

    c, h, w = (int(s) for s in input_shape)
    shape = (c, h, w)
    traced: dict[tuple[int, ...], Any] = {}
    metrics: dict[str, float] = {}
    host = _host(host)
    nodes = dict(targets) if isinstance(targets, Mapping) else {str(t): None for t in targets}
    for name, node in nodes.items():
        try:
            with cached_only():
                target = target_from_config(node if node is not None else target_defaults(str(name), host), host)
        except CalibrationUnavailable as exc:
            log.warning("skipping hw/%s metrics: %s", name, exc)
            continue
        run_shape = target.input_size or shape
        if run_shape not in traced:
            traced[run_shape] = extract_layers(model, run_shape)
        report = estimate(traced[run_shape], target, input_shape=run_shape)
        metrics.update(report_metrics(name, report, target.batch_size))
    return metrics


def report_metrics(name: str, report: Any, batch_size: int) -> dict[str, float]:
    """The ``hw/<target>/...`` metrics of one report, per image (training and profile runs alike)."""
    tot = report.totals
    prefix = f"hw/{name}"
    return {
        f"{prefix}/latency_s": tot["latency_per_image_s"],
        f"{prefix}/transfer_s": tot["transfer_s"] / batch_size,
        f"{prefix}/compute_s": tot["compute_s"] / batch_size,
        # Per image; FLOPs under the target's conventions, MACs of conv and dense layers.
        f"{prefix}/flops": tot["flops"] / batch_size,
        f"{prefix}/macs": tot["macs"] / batch_size,
        f"{prefix}/params": tot["params"],
    }
