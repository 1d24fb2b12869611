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


@dataclass(frozen=True)
class Kind:
    """What the core knows about one plugin kind: a new kind is a hookspec plus one of these.

    ``word`` names an entry in messages (``dataset 'cifar10' ...``); ``group`` is the config
    group that selects one entry (None: the kind lives inside another config, as blocks and
    heads do in ``model``); ``positional`` and ``contract`` are the factory arguments fixed by
    the call contract (see :mod:`hairlab.hookspecs`), which are therefore not options.
    """

    name: str
    word: str
    group: str | None = None
    positional: int = 0
    contract: tuple[str, ...] = ()


#: The five plugin kinds, in the order the CLI lists them.
KIND_SPECS: tuple[Kind, ...] = (
    Kind("blocks", "block", None, 2, ("stride",)),
    Kind("heads", "head", None, 2),
    Kind("optimizers", "optimizer", "optimizer", 1),
    Kind("hardware", "hardware", "hardware"),
    Kind("datasets", "dataset", "dataset"),
)
KINDS: tuple[str, ...] = tuple(k.name for k in KIND_SPECS)


def kind_spec(kind: str) -> Kind:
    """The :class:`Kind` called ``kind`` (a kind unknown to the core: a bare one)."""
    return next((k for k in KIND_SPECS if k.name == kind), Kind(kind, kind))


@dataclass(frozen=True)
class Entry:
    """One named thing a plugin provides.

    ``factory`` builds the object (its call contract depends on the kind; see
    :mod:`hairlab.hookspecs`). ``schema`` is the dataclass of the options the factory accepts:
    their only definition (types, defaults, one-line help in field metadata, ranges in
    ``__post_init__``). hairlab stores it in Hydra's ConfigStore and checks every config against
    it before a job runs. Without one, the factory's keyword parameters serve as the schema.
    """

    name: str
    factory: Callable[..., Any]
    description: str
    schema: type | None = None
    #: Optional check of what the options point at outside the config (a dataset's files are
    #: there, or fetched now), called with the checked options before any run exists; raises
    #: :class:`~hairlab.errors.HairlabError` with the fix. Only datasets use it so far.
    preflight: Callable[..., None] | None = field(default=None, compare=False)
    #: Filled in by the plugin manager: the plugin that registered the entry, and its package.
    plugin: str = field(default="", compare=False)
    distribution: str = field(default="", compare=False)
    version: str = field(default="", compare=False)

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

    def build(self, node: Any, *args: Any, where: str | None = None, **extra: Any) -> Any:
        """Build the entry ``node`` names (``{name: ..., **options}``) through its schema.

        The one build path (:func:`hairlab.contract.build`) for a registry at hand: the options
        are checked (types, unknown keys, the schema's ranges) and completed with its defaults,
        then the factory is called with ``args``; a failure names the entry and its plugin.
        """
        from hairlab.contract.entries import call, owner, schema_of, split_name
        from hairlab.contract.schema import check

        where = where or kind_spec(self.kind).word
        name, opts = split_name(node, self.kind, where)
        entry = self.get(name)
        checked = check(schema_of(entry, self.kind), opts, where=where, owner=owner(entry, self.kind))
        return call(entry, self.kind, checked, *args, **extra)

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build the named entry: ``build({"name": name, **options}, *args)``.

        Contract keywords (a block's ``stride``) are not options and pass through.
        """
        extra = {k: kwargs.pop(k) for k in kind_spec(self.kind).contract if k in kwargs}
        return self.build({"name": name, **kwargs}, *args, **extra)

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
