"""``trainer.max_minutes``: a wall-clock training budget, and the clock the engine reads it by.

The budget counts **training time only**: the steps, their batches and the schedule, from the
first step on; evaluations (curve points, the final test) and checkpoint writes are not
charged, as in airbench, so how often a run evaluates does not change how much it trains. The
job's whole wall time is logged beside it (``time/train_s`` is the budget's clock,
``time/total_s`` the fit's wall time with evaluations), so "minutes to result" reads off both.

The engine reads time only through :func:`clock` (tests replace it with a fake clock) and keeps
the elapsed budget in ``last.pt``, so a killed-and-resumed run continues its budget rather than
starting a new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: The stop reason (``hairlab.stop_reason``) of a run whose budget ended.
STOP_REASON = "max_minutes"


def clock() -> float:
    """Seconds on a monotonic clock: the one time source of the budget (monkeypatched in tests)."""
    return time.monotonic()


class Stopwatch:
    """Seconds accumulated over the intervals between :meth:`start` and :meth:`stop`."""

    def __init__(self, elapsed: float = 0.0) -> None:
        self.acc = float(elapsed)
        self._since: float | None = None

    def start(self) -> None:
        if self._since is None:
            self._since = clock()

    def stop(self) -> None:
        if self._since is not None:
            self.acc += clock() - self._since
            self._since = None

    @property
    def running(self) -> bool:
        return self._since is not None

    def elapsed(self) -> float:
        return self.acc + (clock() - self._since if self._since is not None else 0.0)


class Budget:
    """The training clock (``time/train_s``), the fit's wall clock (``time/total_s``) and the limit."""

    def __init__(self, max_minutes: float | None) -> None:
        self.limit_s = None if max_minutes is None else float(max_minutes) * 60.0
        self.train = Stopwatch()
        self.total = Stopwatch()
        #: training seconds at the last :meth:`tick`: what the schedule and the stop decision read
        self.seen = 0.0

    def tick(self, agree: Callable[[float], float] | None = None) -> None:
        """Read the training clock once per step; ``agree`` makes every rank use the same value
        (the largest) under torchrun, so all ranks schedule alike and stop at the same step."""
        value = self.train.elapsed()
        self.seen = agree(value) if agree is not None else value

    def fraction(self) -> float:
        """Share of the budget used at the last tick, in [0, 1] (0 without a budget)."""
        if not self.limit_s:
            return 0.0
        return min(self.seen / self.limit_s, 1.0)

    def spent(self) -> bool:
        return self.limit_s is not None and self.seen >= self.limit_s

    def state(self) -> dict[str, Any]:
        return {"train_s": self.train.elapsed(), "total_s": self.total.elapsed(), "limit_s": self.limit_s}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Continue the clocks of a killed run from its last checkpoint."""
        if not state:
            return
        self.train = Stopwatch(float(state.get("train_s", 0.0)))
        self.total = Stopwatch(float(state.get("total_s", 0.0)))
        self.seen = self.train.acc
