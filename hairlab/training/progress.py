"""The per-epoch progress bar (loss, accuracy, img/s, ETA) and the epoch summary line."""

from __future__ import annotations

from typing import Any


class EpochProgress:
    """A rich progress bar for one epoch's batches; silent when disabled.

    It is only updated at the engine's sync points (every ``trainer.log_every`` steps), so it
    never forces the device to wait.
    """

    def __init__(self, enabled: bool, console: Any = None) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self.console = console
        if enabled and console is None:
            from rich.console import Console

            self.console = Console(stderr=True)

    def start(self, epoch: int, epochs: int, total: int) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            console=self.console, refresh_per_second=2, transient=False,
        )
        self._task = self._progress.add_task("train", total=total, stats="")
        self._progress.start()

    def update(self, done: int, loss: float, acc: float, img_s: float) -> None:
        if self._progress is not None:
            stats = f"loss {loss:.4f}  acc {acc:.3f}  {img_s:,.0f} img/s"
            self._progress.update(self._task, completed=done, stats=stats)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def summary(self, text: str) -> None:
        if self.enabled and self.console is not None:
            self.console.print(text, highlight=False)
