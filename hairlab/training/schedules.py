"""Learning-rate schedules, as a multiplier of the optimizer's base rate per optimizer step.

Every schedule is a pure function of the run's progress, wrapped in ``LambdaLR`` (whose per-group
base rates keep each parameter group's ratio): by default the progress is the step count, so
nothing but the step needs saving and a resumed run continues on exactly the same curve. Under a
time budget (``trainer.max_minutes``) the progress is the share of the budget used (see
:func:`fraction_factor`), so the same schedule fits any machine's speed.

- ``constant``: the base rate throughout (after the optional warmup).
- ``warmup``: linear warmup over ``warmup`` steps, then constant (5% of the run if unset).
- ``cosine``: optional linear warmup, then cosine decay to ``min_lr_ratio`` x base.
- ``onecycle``: cosine ramp from base/25 up to base over ``warmup`` (30% if unset), then
  cosine decay to ``min_lr_ratio`` x base (Smith's one-cycle policy, without momentum cycling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hairlab.errors import HairlabError

SCHEDULES = ("constant", "warmup", "cosine", "onecycle")
#: Default warmup share of the run for the schedules that need one.
_DEFAULT_WARMUP = {"warmup": 0.05, "onecycle": 0.3}
ONECYCLE_DIV = 25.0


def warmup_steps(warmup: float | int | None, total: int, schedule: str) -> int:
    """``warmup`` as a step count: a fraction of ``total`` when below 1, else steps."""
    value = float(warmup or 0)
    if value < 0:
        raise HairlabError(f"trainer.warmup must be >= 0 (steps, or a fraction < 1 of the run), got {warmup}")
    if value == 0:
        value = _DEFAULT_WARMUP.get(schedule, 0.0)
    steps = round(value * total) if value < 1 else int(value)
    return min(steps, total)


def lr_factor(schedule: str, total: int, warmup: int, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """The multiplier of the base rate after ``step`` optimizer steps."""
    if schedule not in SCHEDULES:
        raise HairlabError(f"trainer.schedule={schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}")
    total = max(int(total), 1)

    def decay(step: int) -> float:
        span = max(total - warmup, 1)
        progress = min(max(step - warmup, 0) / span, 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def factor(step: int) -> float:
        if schedule == "onecycle":
            if step < warmup:
                start = 1.0 / ONECYCLE_DIV
                return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / warmup))
            return decay(step)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return decay(step) if schedule == "cosine" else 1.0

    return factor


def fraction_factor(schedule: str, warmup: float | None, min_lr_ratio: float = 0.0) -> Callable[[float], float]:
    """The multiplier of the base rate at ``progress`` in [0, 1] (a time budget's share used).

    The same curves as :func:`lr_factor`, with the warmup a fraction of the run: ``warmup`` and
    ``warmup`` start from 0 (a linear ramp in time), ``onecycle`` from base/25.
    """
    if schedule not in SCHEDULES:
        raise HairlabError(f"trainer.schedule={schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}")
    warm = float(warmup or 0) or _DEFAULT_WARMUP.get(schedule, 0.0)
    if not 0 <= warm < 1:
        raise HairlabError(f"trainer.warmup={warmup}: with trainer.max_minutes the warmup is a fraction (< 1) "
                           "of the budget; give e.g. trainer.warmup=0.1")

    def factor(progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        if p < warm:
            if schedule == "onecycle":
                start = 1.0 / ONECYCLE_DIV
                return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * p / warm))
            return p / warm
        if schedule in ("cosine", "onecycle"):
            q = (p - warm) / max(1 - warm, 1e-12)
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * q))
        return 1.0

    return factor


def make_scheduler(optimizer: Any, trainer_cfg: Any, total_steps: int,
                   progress: Callable[[int], float] | None = None) -> Any:
    """A ``LambdaLR`` for the schedule named by ``trainer.schedule``.

    ``progress`` (a time budget's share used after a given step) drives the schedule instead of
    ``step / total_steps`` when given.
    """
    import torch

    name = str(trainer_cfg.get("schedule", "constant"))
    ratio = float(trainer_cfg.get("min_lr_ratio", 0.0))
    if progress is not None:
        at = fraction_factor(name, trainer_cfg.get("warmup", 0), ratio)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: at(progress(step)))
    warm = warmup_steps(trainer_cfg.get("warmup", 0), total_steps, name)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(name, total_steps, warm, ratio))
