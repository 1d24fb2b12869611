"""Named registries, one per plugin kind, filled by plugins through the hooks.

Modelled on timm's model registry: a name maps to a factory plus enough metadata to
list, describe and validate it, and a lookup miss names every alternative.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hairlab.errors import DuplicateEntryError, UnknownEntryError

#: The five plugin kinds, in the order the CLI lists them.
KINDS: tuple[str, ...] = ("blocks", "heads", "optimizers", "hardware", "datasets")


@dataclass(frozen=True)
class Entry:
    """One named thing a plugin provides.

    ``factory`` builds the object (its call contract depends on the kind; see
    :mod:`hairlab.hookspecs`). ``schema`` is an optional dataclass describing the options
    the factory accepts, used for documentation and for Hydra structured configs.
    """

    name: str
    factory: Callable[..., Any]
    description: str
    schema: type | None = None
    #: Filled in by the plugin manager: the plugin that registered the entry.
    plugin: str = field(default="", compare=False)

    def summary(self) -> str:
        """The first line of the description, for tables."""
        return self.description.strip().splitlines()[0] if self.description.strip() else ""


class Registry:
    """Entries of one kind, by name. Names are unique across plugins."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        """Register ``entry``; a name owned by another plugin is refused."""
        if not isinstance(entry, Entry):
            raise TypeError(f"{self.kind} hook returned {type(entry).__name__}, expected hairlab.registry.Entry")
        owner = self._entries.get(entry.name)
        if owner is not None:
            raise DuplicateEntryError(
                f"{self.kind} name '{entry.name}' is already provided by plugin '{owner.plugin}'"
            )
        self._entries[entry.name] = entry

    def get(self, name: str) -> Entry:
        """The entry called ``name``, or an error listing the available names."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownEntryError(self.kind, name, self._entries) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build the named entry with its factory."""
        return self.get(name).factory(*args, **kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
