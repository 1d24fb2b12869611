"""Discovery and loading of plugins, with every failure contained to its own plugin.

Order of business, as in tox 4: read the block list from the environment, load the
``hairlab`` entry points one at a time (each ``ep.load()`` guarded, since pluggy's own
``load_setuptools_entrypoints`` lets one broken package break everyone), register them,
``check_pending()``, then ask each plugin's hooks for its entries, again one plugin at a
time. hairlab's own built-ins arrive through the very same entry points.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from hairlab import PROJECT, hookspecs
from hairlab.errors import HairlabError
from hairlab.registry import KINDS, Entry, Registry

#: Comma-separated plugin names (entry-point names) to skip.
ENV_DISABLE = "HAIRLAB_DISABLE_PLUGINS"
#: Set to 1 to load no entry points at all (tests register plugins by hand).
ENV_NO_AUTOLOAD = "HAIRLAB_DISABLE_PLUGIN_AUTOLOAD"

_KIND_HOOKS = {kind: f"hairlab_{kind}" for kind in KINDS}


@dataclass
class PluginRecord:
    """What ``hairlab plugins`` shows for one plugin."""

    name: str
    module: str = ""
    distribution: str = ""
    version: str = ""
    status: str = "ok"  # ok | failed | disabled | partial
    reason: str = ""
    provides: dict[str, list[str]] = field(default_factory=dict)
    searchpath: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if self.provides.get(k)]

    def fail(self, reason: str, *, partial: bool = False) -> None:
        self.status = "partial" if partial and self.status in ("ok", "partial") else "failed"
        self.reason = f"{self.reason}; {reason}" if self.reason else reason


class PluginHost:
    """The loaded plugins, their registries and their config contributions."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}

    # -- loading -----------------------------------------------------------------------
    def load_entrypoints(self, disabled: Iterable[str] = ()) -> None:
        """Load every ``hairlab`` entry point, guarding each import."""
        blocked = set(disabled)
        for ep in _sorted_entrypoints():
            dist = ep.dist.name if ep.dist is not None else ""
            version = ep.dist.version if ep.dist is not None else ""
            record = PluginRecord(name=ep.name, module=ep.value, distribution=dist, version=version)
            if ep.name in self.records:
                record.status, record.reason = "failed", (
                    f"plugin name '{ep.name}' already used by {self.records[ep.name].distribution}"
                )
                self.records[f"{ep.name} ({dist})"] = record
                continue
            self.records[ep.name] = record
            if ep.name in blocked:
                record.status, record.reason = "disabled", f"listed in ${ENV_DISABLE}"
                self.pm.set_blocked(ep.name)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import error must be contained
                record.fail(f"import failed: {type(exc).__name__}: {exc}")
                continue
            self._register(plugin, record)

    def register(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> None:
        """Register an in-process plugin object (tests, notebooks)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        record = PluginRecord(name=name, module=module, distribution=distribution, version=version)
        self.records[name] = record
        self._register(plugin, record)

    def _register(self, plugin: Any, record: PluginRecord) -> None:
        try:
            self.pm.register(plugin, name=record.name)
        except Exception as exc:  # noqa: BLE001 - e.g. a hookimpl with a misspelt argument
            record.fail(f"registration failed: {type(exc).__name__}: {exc}")

    def collect(self) -> None:
        """Ask each registered plugin for its entries, one plugin at a time."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) if exc.plugin is not None else "?"
            rec = self.records.get(name or "")
            if rec is not None:
                rec.fail(f"unknown hook: {exc}")
                self.pm.unregister(exc.plugin)
        for kind, hook_name in _KIND_HOOKS.items():
            registry = self.registries[kind]
            for impl, record in self._impls(hook_name):
                entries = self._call(impl, record, hook_name)
                for entry in entries or ():
                    try:
                        entry = _with_owner(entry, record.name)
                        registry.add(entry)
                    except Exception as exc:  # noqa: BLE001 - duplicate or malformed entry
                        record.fail(str(exc), partial=True)
                        continue
                    record.provides.setdefault(kind, []).append(entry.name)
        for impl, record in self._impls("hairlab_config_searchpath"):
            paths = self._call(impl, record, "hairlab_config_searchpath") or []
            record.searchpath.extend(str(p) for p in paths)

    def configure_store(self, store: Any) -> None:
        """Let plugins register structured configs in Hydra's ConfigStore."""
        for impl, record in self._impls("hairlab_configure_store"):
            self._call(impl, record, "hairlab_configure_store", store=store)

    def _impls(self, hook_name: str) -> list[tuple[Any, PluginRecord]]:
        hook = getattr(self.pm.hook, hook_name)
        out = []
        for impl in hook.get_hookimpls():  # registration order (pluggy calls LIFO; we do not)
            record = self.records.get(impl.plugin_name)
            if record is None:
                record = self.records[impl.plugin_name] = PluginRecord(name=impl.plugin_name)
            out.append((impl, record))
        return out

    @staticmethod
    def _call(impl: Any, record: PluginRecord, hook_name: str, **kwargs: Any) -> Any:
        try:
            return impl.function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a raising hook skips this plugin only
            record.fail(f"{hook_name} raised {type(exc).__name__}: {exc}", partial=True)
            return None

    # -- queries -----------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (one of :data:`hairlab.registry.KINDS`)."""
        try:
            return self.registries[kind]
        except KeyError:
            raise HairlabError(f"unknown plugin kind '{kind}'; kinds: {', '.join(KINDS)}") from None

    def searchpath(self) -> list[str]:
        """Config search-path entries from all healthy plugins, in load order."""
        return [p for r in self.records.values() if r.status != "failed" for p in r.searchpath]

    def distributions(self) -> dict[str, str]:
        """Distribution name to version for every loaded plugin (for run tags)."""
        return {r.distribution: r.version for r in self.records.values() if r.distribution and r.status != "disabled"}


def _with_owner(entry: Entry, plugin: str) -> Entry:
    if not isinstance(entry, Entry):
        raise TypeError(f"hook returned {type(entry).__name__}, expected hairlab.registry.Entry")
    return Entry(entry.name, entry.factory, entry.description, entry.schema, plugin=plugin)


def _sorted_entrypoints() -> list[md.EntryPoint]:
    """hairlab's own entry points first, then the others by distribution and name.

    A fixed order makes name clashes resolve the same way every time: the first owner wins.
    """
    eps = list(md.entry_points(group=PROJECT))

    def key(ep: md.EntryPoint) -> tuple[int, str, str]:
        dist = ep.dist.name if ep.dist is not None else ""
        return (0 if dist == PROJECT else 1, dist, ep.name)

    unique: dict[tuple[str, str], md.EntryPoint] = {}
    for ep in sorted(eps, key=key):  # the same dist can be seen twice on odd sys.paths
        unique.setdefault((ep.dist.name if ep.dist else "", ep.name), ep)
    return list(unique.values())


def disabled_from_env() -> list[str]:
    """Plugin names listed in ``$HAIRLAB_DISABLE_PLUGINS``."""
    return [n.strip() for n in os.environ.get(ENV_DISABLE, "").split(",") if n.strip()]


def autoload_enabled() -> bool:
    return os.environ.get(ENV_NO_AUTOLOAD, "").lower() not in ("1", "true", "yes")


@functools.lru_cache(maxsize=1)
def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    host = PluginHost()
    if autoload_enabled():
        host.load_entrypoints(disabled_from_env())
    host.collect()
    return host


def registry(kind: str) -> Registry:
    """Shortcut: the registry of ``kind`` from the process-wide host."""
    return get_host().registry(kind)


def reset() -> None:
    """Forget the process-wide host (tests)."""
    get_host.cache_clear()
