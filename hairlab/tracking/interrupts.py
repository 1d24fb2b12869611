"""SIGINT and SIGTERM as exceptions, so every run an interrupted process owns is closed KILLED.

Python's default SIGTERM ends the process at once, skipping ``finally`` blocks and atexit
hooks: a run it owned would stay RUNNING for ever. :func:`install` (main thread only)
turns both signals into :class:`Interrupted` while a job runs in this process, or into
``SystemExit(128 + signum)`` when none does (a sweep's launching process waiting on its
workers), so the process exits 130 / 143 after the ``finally`` blocks and atexit hooks ran.

Only the first signal interrupts. Later ones (the impatient second Ctrl-C) are reported and
ignored, so they cannot cut the shutdown that closes the runs. Code that must not be cut
by the first one either (ending a run) runs inside :func:`deferred`; a signal arriving
there interrupts when the block ends.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A job was interrupted by ``signum``; ``exit_code`` is the shell's 128 + signum."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    signum: int | None = None  # the first signal received
    pending: bool = False  # it arrived inside a deferred block
    depth: int = 0  # nesting of deferred blocks
    jobs: int = 0  # jobs running in this process (the runner counts them)
    installed: bool = False
    #: called once with the signal number before interrupting (the sweep callback forwards
    #: the signal to its jobs in other processes and waits for their runs to close)
    hooks: list[Callable[[int], None]] = []


_state = _State()


def install() -> bool:
    """Handle SIGINT and SIGTERM in this process; False outside the main thread (no-op)."""
    if _state.installed:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    _state.installed = True
    return True


def received() -> int | None:
    """The first interrupting signal this process got, if any."""
    return _state.signum


def add_hook(hook: Callable[[int], None]) -> None:
    _state.hooks.append(hook)


def remove_hook(hook: Callable[[int], None]) -> None:
    with contextlib.suppress(ValueError):
        _state.hooks.remove(hook)


@contextlib.contextmanager
def job() -> Iterator[None]:
    """Marks a job running in this process: a signal then raises :class:`Interrupted` in it."""
    _state.jobs += 1
    try:
        yield
    finally:
        _state.jobs -= 1


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block the first signal may not cut (ending a run); it interrupts when the block ends."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if _state.depth == 0 and _state.pending:
        _state.pending = False
        _interrupt()


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if _state.signum is not None:
        print(f"hairlab: {name} again: still closing the runs as KILLED, please wait", file=sys.stderr, flush=True)
        return
    _state.signum = signum
    print(f"hairlab: {name} received: closing the runs as KILLED", file=sys.stderr, flush=True)
    if _state.depth:
        _state.pending = True
        return
    _interrupt()


def _interrupt() -> None:
    signum = _state.signum
    assert signum is not None
    for hook in list(_state.hooks):
        try:
            hook(signum)
        except Exception as exc:  # noqa: BLE001 - interrupting matters more than the hook
            print(f"hairlab: while interrupting: {type(exc).__name__}: {exc}", file=sys.stderr)
    if _state.jobs:
        raise Interrupted(signum)
    raise SystemExit(128 + signum)
