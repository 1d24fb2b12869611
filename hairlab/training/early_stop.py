"""Early stopping: end a run whose metric has stopped improving, so hopeless trials cost little.

``trainer.early_stop`` is null (off, the default) or an :class:`EarlyStopConfig`. The engine
feeds :class:`EarlyStopping` the metric at every evaluation point (each epoch's end and each
``eval_every`` point); after ``patience`` points in a row without an improvement of more than
``min_delta`` over the best value so far, the run stops there: it ends FINISHED, its schedule
simply ends early, and the reason is tagged ``hairlab.stop_reason``.

No torch here: the schema is imported by the config check, before anything heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from hairlab.contract.schema import opt
from hairlab.metric_names import higher_is_better

MODES = ("max", "min")


@dataclass
class EarlyStopConfig:
    """When a run stops early: which metric, which direction is better, how long to wait."""

    metric: Optional[str] = opt(None, "metric watched at each evaluation point; null = the run's selection "
                                      "metric (val/acc with a val split, else test/acc)")
    mode: Optional[Literal["max", "min"]] = opt(
        None, "max = higher is better (accuracy), min = lower is better; null = from its name: "
              "min for losses, errors, times and costs, else max")
    patience: int = opt(3, "evaluation points in a row without improvement before the run stops, >= 1")
    min_delta: float = opt(0.0, "an improvement must exceed this, >= 0")

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: expected max, min or null")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience={self.patience}: expected an integer >= 1")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta={self.min_delta}: expected a number >= 0")
        if self.metric is not None and not str(self.metric).strip():
            raise ValueError("metric='': expected a metric name such as val/acc, or null")


def direction(metric: str, mode: str | None) -> str:
    """``mode``, or the one a metric's name implies (:mod:`hairlab.metric_names`, as for objectives)."""
    if mode is not None:
        return mode
    return "max" if higher_is_better(metric) else "min"


class EarlyStopping:
    """Counts evaluation points without improvement; :meth:`update` says when to stop.

    A pure function of the values seen, so a resumed run replays its history through a fresh
    instance and stops exactly where the uninterrupted run would.
    """

    def __init__(self, metric: str, mode: str = "max", patience: int = 3, min_delta: float = 0.0) -> None:
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0  # points since the last improvement

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta`` (NaN never does)."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation point; True when the run should stop here."""
        if self.improved(value):
            self.best, self.best_step, self.bad = value, step, 0
        else:
            self.bad += 1
        return self.bad >= self.patience

    @property
    def reason(self) -> str:
        """The ``hairlab.stop_reason`` tag of a run this stopped."""
        best = f" (best {self.best:.4g} at step {self.best_step})" if self.best is not None else ""
        return (f"early_stop: {self.metric} did not improve by {self.min_delta:g} "
                f"for {self.patience} evaluations{best}")
