"""A training job's progress: a rich bar in a terminal, plain lines in a log, and the epoch summary.

Outside a terminal (``| tee``, SLURM, a log file) a bar prints nothing until the epoch ends and
rich wraps every line at 80 columns; there, :class:`EpochProgress` prints one plain line every
:data:`ENV_INTERVAL` seconds instead (job position, steps, loss, img/s, the job's ETA) and
nothing wraps. In a terminal the bar shows the same, with the epoch's and the job's ETA.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

#: Seconds between plain progress lines outside a terminal (default :data:`DEFAULT_INTERVAL_S`).
ENV_INTERVAL = "HAIRLAB_PROGRESS_S"
DEFAULT_INTERVAL_S = 30.0
#: Set by the sweep callback before the jobs start: how many jobs the sweep launches.
ENV_SWEEP_JOBS = "HAIRLAB_SWEEP_JOBS"
#: Width of a console that is not a terminal, when $COLUMNS does not say (tables only; lines never wrap).
LOG_WIDTH = 200


def make_console(stderr: bool = False) -> Any:
    """A rich console that never wraps a line when it writes to a log rather than a terminal."""
    from rich.console import Console

    out = Console(stderr=stderr)
    if out.is_terminal:
        return out
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else LOG_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)


def interval_s() -> float:
    """:data:`ENV_INTERVAL` as seconds (a bad value falls back to the default)."""
    try:
        value = float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


def sweep_position() -> str | None:
    """``job 3/12`` inside a multirun's job (Hydra's ``hydra.job.num`` counts from 0), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN or hc.job.get("num") is None:  # type: ignore[attr-defined]
            return None
        num = int(hc.job.num) + 1  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a position is a convenience
        return None
    total = os.environ.get(ENV_SWEEP_JOBS, "")
    return f"job {num}/{total}" if total.isdigit() and int(total) >= num else f"job {num}"


def duration(seconds: float) -> str:
    """``42s``, ``5m12s``, ``2h03m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class EpochProgress:
    """One job's progress, updated only at the engine's sync points (every ``trainer.log_every``
    steps), so it never makes the device wait; silent when disabled.

    The engine calls :meth:`start` per epoch, :meth:`update`, :meth:`stop` and :meth:`summary`;
    :meth:`plan` (optional) gives the job's step budget for an exact ETA, which is otherwise
    estimated from the epochs left times the first epoch's length.
    """

    def __init__(self, enabled: bool, console: Any = None, *, interval: float | None = None,
                 position: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self.console = console
        if enabled and console is None:
            self.console = make_console(stderr=True)
        self.plain = bool(enabled and self.console is not None and not self.console.is_terminal)
        self.interval = interval_s() if interval is None else interval
        self.position = sweep_position() if enabled and position is None else position
        self.clock = clock
        self._job_total: int | None = None
        self._job_done = 0  # steps of the epochs before the current one
        self._epoch_len = 0  # the first epoch's length (every epoch but the last is as long)
        self._epoch = (0, 0, 0)  # epoch, epochs, steps in it
        self._done = 0
        self._began: tuple[float, int] | None = None  # (time, job steps) at the first start()
        self._epoch_began = 0.0
        self._last_line: float | None = None
        self._time_left: Callable[[], float] | None = None

    def plan(self, total_steps: int, done: int = 0) -> None:
        """The job's step budget and the steps already done (a resumed job), for its ETA."""
        self._job_total, self._job_done = int(total_steps), int(done)

    def plan_time(self, left_s: Callable[[], float]) -> None:
        """A job that only a time budget ends (``trainer.max_minutes``): its ETA is the budget left."""
        self._time_left = left_s

    def start(self, epoch: int, epochs: int, total: int) -> None:
        if not self.enabled:
            return
        if not self._epoch_len:
            self._epoch_len = total
            if self._job_total is None:
                self._job_done = (epoch - 1) * total  # a resumed job starts after its finished epochs
        self._epoch, self._done = (epoch, epochs, total), 0
        self._epoch_began = self.clock()
        if self._began is None:
            self._began = (self._epoch_began, self._job_done)
        if self.plain:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        where = f"{self.position}  " if self.position else ""
        self._progress = Progress(
            TextColumn(f"{where}epoch {epoch}/{epochs}" if epochs else f"{where}epoch {epoch}"), BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TextColumn("{task.fields[eta]}"),
            console=self.console, refresh_per_second=2, transient=False,
        )
        self._task = self._progress.add_task("train", total=total, stats="", eta="")
        self._progress.start()

    def update(self, done: int, loss: float, acc: float, img_s: float) -> None:
        if not self.enabled:
            return
        now = self.clock()
        self._done = done
        stats = f"loss {loss:.4f}  acc {acc:.3f}  {img_s:,.0f} img/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=done, stats=stats, eta=self._eta_text(now, both=True))
        elif self.plain and (self._last_line is None or now - self._last_line >= self.interval):
            self._last_line = now
            epoch, epochs, _ = self._epoch
            steps = self._job_done + done
            where = f"{self.position}  " if self.position else ""
            at = f"epoch {epoch}/{epochs}  step {steps:,}/{self.job_total():,}" if epochs else \
                f"epoch {epoch}  step {steps:,}"
            self.console.print(
                f"{where}{at}  {stats}  {self._eta_text(now)}",
                highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.enabled and self._epoch[2]:
            self._job_done += self._done
            self._epoch, self._done = (self._epoch[0], self._epoch[1], 0), 0

    def summary(self, text: str) -> None:
        if self.enabled and self.console is not None:
            self.console.print(text, highlight=False, soft_wrap=self.plain)

    # -- ETA ----------------------------------------------------------------------------------
    def job_total(self) -> int:
        """The job's steps: :meth:`plan`'s, else the epochs left times the first epoch's length."""
        if self._job_total is not None:
            return self._job_total
        epoch, epochs, total = self._epoch
        return self._job_done + total + max(0, epochs - epoch) * self._epoch_len

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left in the job at its rate so far in this process (evaluations included)."""
        if self._time_left is not None:
            return max(self._time_left(), 0.0)
        if self._began is None:
            return None
        now = self.clock() if now is None else now
        began, steps0 = self._began
        steps = self._job_done + self._done - steps0
        if steps <= 0 or now <= began:
            return None
        return (self.job_total() - self._job_done - self._done) * (now - began) / steps

    def _eta_text(self, now: float, both: bool = False) -> str:
        eta = self.eta_s(now)
        if eta is None:
            return "ETA job ?"
        text = f"ETA job {duration(eta)}"
        epoch_left = self._epoch[2] - self._done
        if both and self._done and epoch_left and self._epoch[1] > 1:
            epoch_eta = epoch_left * (now - self._epoch_began) / self._done
            text = f"ETA epoch {duration(epoch_eta)}, job {duration(eta)}"
        return text
