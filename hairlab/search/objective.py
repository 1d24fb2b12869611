"""The ``objective`` config key: what a job's return value is, for sweepers that optimise.

Hydra's basic sweeper ignores a job's return; Optuna (``hydra/sweeper=optuna``) needs a float,
or a sequence of floats for a multi-objective study, in the order of its ``direction`` list.
``objective`` names those metrics::

    objective: {metric: val/acc, direction: maximize}
    objective: [val/acc:maximize, hw/paper2012/latency_s:minimize]
    objective: val/acc                      # direction from the name: losses, times, costs minimised

``metric: null`` (or ``selection``) is the run's selection metric (``val/acc`` with a validation
split, else ``test/acc``; the job result's ``selection_metric``). Everything is checked before
any run exists (:func:`check`), so a typo is one line, exit status 2, not a failed study.

A failed or diverged job has no values. Hydra's Optuna sweeper up to 1.3.0 (the newest release;
the fix, hydra PR #3451, is unreleased) crashes the whole study on a NaN: Optuna refuses NaN as
COMPLETE, and the sweeper's retry as FAIL still passes the NaN. A value that is not
float-castable (``None``) is recorded as a FAIL cleanly by every version, so a failed job returns
``None`` under that sweeper and NaN(s) under any other (:func:`failed_value`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

from hairlab.contract.schema import opt
from hairlab.errors import HairlabError
from hairlab.metric_names import higher_is_better

#: Spellings of the two directions (Optuna's own words first).
DIRECTIONS = {"maximize": "maximize", "minimize": "minimize", "max": "maximize", "min": "minimize"}
#: ``metric`` values that mean "the run's selection metric".
SELECTION = ("selection",)
#: The fallbacks for a result without ``selection_metric`` (older runs): as in the sweep summary.
SELECTION_FALLBACK = ("val/acc", "test/acc")
#: Keys the cost model logs per target (``hw/<target>/<key>``; ``ops`` became ``flops`` in issue 12).
HW_KEYS = ("latency_s", "transfer_s", "compute_s", "flops", "macs", "params")
#: What to write, shown in every error.
EXAMPLE = "e.g. objective=val/acc:maximize or objective='[val/acc:max,hw/paper2012/latency_s:min]'"


@dataclass
class ObjectiveConfig:
    """One metric a sweeper optimises, and which way."""

    metric: Optional[str] = opt(None, "a metric the run logs (val/acc, hw/paper2012/latency_s, ...); null = the "
                                      "run's selection metric (val/acc with a val split, else test/acc)")
    direction: Optional[Literal["maximize", "minimize"]] = opt(
        None, "maximize or minimize (max/min); null = from its name: minimize losses, errors, "
                                       "times and costs, else maximize")


@dataclass(frozen=True)
class Objective:
    """A checked objective: ``metric`` None is the run's selection metric."""

    metric: Optional[str]
    direction: str

    def label(self) -> str:
        return f"{self.metric or 'selection metric'}:{self.direction[:3]}"

    def value(self, result: Mapping[str, Any]) -> float:
        """This objective's value in a job's result (NaN when the job did not log it)."""
        name = self.metric or selection_metric(result)
        raw = result.get(name) if name else None
        try:
            return float(raw) if raw is not None else math.nan
        except (TypeError, ValueError):
            return math.nan


def selection_metric(result: Mapping[str, Any]) -> Optional[str]:
    """The metric the job selects on: its ``selection_metric``, else val/acc, else test/acc it has."""
    named = result.get("selection_metric")
    if named:
        return str(named)
    return next((m for m in SELECTION_FALLBACK if m in result), None)


def default_direction(metric: Optional[str]) -> str:
    """The selection metric is maximised; any other as its name implies (:mod:`hairlab.metric_names`)."""
    return "maximize" if metric is None or higher_is_better(metric) else "minimize"


def _one(item: Any, where: str) -> Objective:
    if isinstance(item, str):
        name, _, spelled = item.rpartition(":") if ":" in item else (item, "", "")
        item = {"metric": name.strip(), "direction": spelled.strip() or None}
    if not isinstance(item, Mapping):
        raise HairlabError(f"{where}={item!r}: expected METRIC[:DIRECTION] or {{metric, direction}}; {EXAMPLE}")
    unknown = sorted(set(item) - {"metric", "direction"})
    if unknown:
        raise HairlabError(f"{where}.{unknown[0]} is not an objective option (options: metric, direction); {EXAMPLE}")
    raw = item.get("metric")
    if raw is not None and not isinstance(raw, str):
        raise HairlabError(f"{where}.metric={raw!r}: expected a metric name (e.g. val/acc); {EXAMPLE}")
    metric: Optional[str] = None if raw in (None, "", *SELECTION) else raw
    if metric is not None and (any(c.isspace() for c in metric) or metric.startswith("/") or metric.endswith("/")):
        raise HairlabError(f"{where}.metric='{metric}': not a metric name (e.g. val/acc, hw/paper2012/latency_s)")
    direction = item.get("direction")
    if direction is None:
        return Objective(metric, default_direction(metric))
    chosen = DIRECTIONS.get(str(direction).lower())
    if chosen is None:
        raise HairlabError(f"{where}.direction={direction!r} (metric {metric or 'selection'}): expected maximize or "
                           f"minimize (or max/min); {EXAMPLE}")
    return Objective(metric, chosen)


def parse(node: Any) -> list[Objective]:
    """The objectives of an ``objective`` config value; empty when none is configured."""
    if node is None:
        return []
    if hasattr(node, "items") and not isinstance(node, Mapping):  # an OmegaConf node
        from hairlab.contract.convert import to_dict

        node = to_dict(node)
    elif hasattr(node, "__iter__") and not isinstance(node, (str, Mapping, list, tuple)):
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(node, resolve=True)
    items = list(node) if isinstance(node, Sequence) and not isinstance(node, str) else [node]
    if not items:
        return []
    out = [_one(item, f"objective[{i}]" if len(items) > 1 else "objective") for i, item in enumerate(items)]
    names = [o.metric for o in out]
    if len(set(names)) != len(names):
        raise HairlabError(f"objective names a metric twice ({', '.join(o.label() for o in out)}); list each once")
    return out


def configured(cfg: Any) -> list[Objective]:
    """``cfg.objective`` parsed (empty when absent or null)."""
    node = cfg.get("objective") if hasattr(cfg, "get") else None
    return parse(node)


def sweeper_directions(hydra_cfg: Any) -> Optional[list[str]]:
    """The directions of an Optuna-like sweeper (``hydra.sweeper.direction``); None for others."""
    sweeper = hydra_cfg.get("sweeper") if hydra_cfg is not None else None
    if sweeper is None or "direction" not in sweeper:
        return None
    raw = sweeper.get("direction")
    items = [raw] if isinstance(raw, str) or not hasattr(raw, "__iter__") else list(raw)
    return [DIRECTIONS.get(str(getattr(d, "name", d)).lower(), str(getattr(d, "name", d)).lower()) for d in items]


def is_optuna(hydra_cfg: Any) -> bool:
    sweeper = hydra_cfg.get("sweeper") if hydra_cfg is not None else None
    return sweeper is not None and "optuna" in str(sweeper.get("_target_", "")).lower()


def check(cfg: Any, host: Any = None, hydra_cfg: Any = None) -> list[Objective]:
    """The objectives, checked against the sweeper and the run's hardware metrics; one-line HairlabError.

    With a sweeper that reads returns (``hydra.sweeper.direction``) and no ``objective``, the
    selection metric stands in for a single direction; 2+ directions need an objective each.
    """
    objectives = configured(cfg)
    directions = sweeper_directions(hydra_cfg) if hydra_cfg is not None else None
    if directions is not None:
        if not objectives and len(directions) == 1:
            objectives = [Objective(None, directions[0])]
        if len(objectives) != len(directions):
            raise HairlabError(
                f"the sweeper optimises {len(directions)} value(s) (hydra.sweeper.direction={directions}) but "
                f"objective lists {len(objectives)}; give one objective per direction, {EXAMPLE}")
        for o, d in zip(objectives, directions, strict=True):
            if o.direction != d:
                wanted = ",".join(x.direction for x in objectives)
                raise HairlabError(f"objective {o.label()} but hydra.sweeper.direction says {d}: make them agree "
                                   f"(same order), e.g. hydra.sweeper.direction=[{wanted}]")
    if host is not None:
        _check_hw(objectives, cfg, host)
    return objectives


def _check_hw(objectives: list[Objective], cfg: Any, host: Any) -> None:
    """``hw/<target>/<key>`` needs ``target`` among the run's hw targets, and a key the cost model logs."""
    hw = [o.metric for o in objectives if o.metric and o.metric.startswith("hw/")]
    if not hw:
        return
    from hairlab.costmodel.api import resolve_targets

    try:
        targets = resolve_targets(cfg, host)
    except HairlabError:
        return  # the config check names the bad hw_targets entry itself
    for metric in hw:
        parts = metric.split("/")
        if len(parts) != 3 or parts[2] not in HW_KEYS:
            raise HairlabError(f"objective metric '{metric}': expected hw/<target>/<key>, key one of "
                               f"{', '.join(HW_KEYS)} (e.g. hw/paper2012/latency_s)")
        if parts[1] not in targets:
            logged = ", ".join(sorted(targets)) or "none"
            raise HairlabError(f"objective metric '{metric}': the runs log no hw/{parts[1]}/* (their hw targets: "
                               f"{logged}); choose hardware={parts[1]} or add it, e.g. hw_targets=[auto,{parts[1]}]")


def values(objectives: Sequence[Objective], result: Mapping[str, Any]) -> list[float]:
    """The objectives' values in a job's result, in order (NaN where missing)."""
    return [o.value(result) for o in objectives]


def failed_value(n: int, optuna: bool) -> Any:
    """What a failed or diverged job returns: ``None`` for the Optuna sweeper (see the module doc), else NaN(s)."""
    if optuna:
        return None
    return math.nan if n == 1 else [math.nan] * n


def job_return(objectives: Sequence[Objective], result: Any, *, optuna: bool) -> Any:
    """The task function's return: the result dict without objectives, else float(s), else the failure value."""
    if not objectives:
        return result
    if (not isinstance(result, Mapping) or str(result.get("status", "")).lower() in ("diverged", "failed")
            or result.get("diverged_step") is not None):
        return failed_value(len(objectives), optuna)
    got = values(objectives, result)
    if any(math.isnan(v) for v in got):
        return failed_value(len(objectives), optuna)
    return got[0] if len(got) == 1 else got
