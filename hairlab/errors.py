"""User-facing errors: each one becomes a single line on stderr and exit status 2."""

from __future__ import annotations

from collections.abc import Iterable


class HairlabError(Exception):
    """An error caused by the user's input or environment, with the fix in its message.

    The CLI prints ``hairlab: <message>`` and exits with :attr:`exit_code`; no traceback.
    """

    exit_code = 2


class UnknownEntryError(HairlabError, KeyError):
    """A registry name that no loaded plugin provides."""

    def __init__(self, kind: str, name: str, available: Iterable[str], *, failed: Iterable[str] = ()) -> None:
        self.kind, self.name = kind, name
        self.available = sorted(available)
        #: Plugins that failed to load: the entry may be theirs.
        self.failed = sorted(failed)
        listed = ", ".join(self.available) or "none (is the plugin installed and enabled?)"
        super().__init__(
            f"unknown {kind} entry '{name}'; available: {listed} "
            f"(see `hairlab list {kind}`, or install a plugin that provides it)" + failed_plugins_note(self.failed)
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def failed_plugins_note(failed: Iterable[str]) -> str:
    """The tail of an unknown-name message when some plugins did not load: the name may be theirs."""
    names = sorted(failed)
    if not names:
        return ""
    quoted = ", ".join(f"'{n}'" for n in names)
    which = "plugin" if len(names) == 1 else "plugins"
    return f"; note: {which} {quoted} failed to load (hairlab plugins)"


class DuplicateEntryError(HairlabError):
    """Two plugins claim the same name in one registry."""


class TrainingDiverged(Exception):
    """Raised inside the engine when the loss stops being finite; the runner records it."""

    def __init__(self, step: int, last_finite_loss: float | None) -> None:
        self.step, self.last_finite_loss = step, last_finite_loss
        super().__init__(f"loss became non-finite at step {step} (last finite loss: {last_finite_loss})")
