"""Discovery and loading of plugins, with every failure contained to its own plugin.

Order of business, as in tox 4: read the block list from the environment, load the
``hairlab`` entry points one at a time (each ``ep.load()`` guarded, since pluggy's own
``load_setuptools_entrypoints`` lets one broken package break everyone), register them,
``check_pending()``, then ask each plugin's hooks for its entries, again one plugin at a
time. hairlab's own built-ins arrive through the very same entry points.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata as md
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from hairlab import PROJECT, hookspecs
from hairlab.errors import HairlabError, UnknownEntryError
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
    #: Hooks of this plugin that raised or returned something unusable.
    failed_hooks: set[str] = field(default_factory=set)

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if self.provides.get(k)]

    def fail(self, reason: str, *, partial: bool = False) -> None:
        self.status = "partial" if partial and self.status in ("ok", "partial") else "failed"
        self.reason = f"{self.reason}; {reason}" if self.reason else reason


class HostRegistry(Registry):
    """A registry whose misses also name the plugins that might have provided the entry.

    A user who asks for ``model=mobilenet`` after the mobilenet plugin failed to import
    should learn that, not only that the name is unknown.
    """

    def __init__(self, kind: str, failed: Callable[[str], list[str]]) -> None:
        super().__init__(kind)
        self._failed = failed

    def get(self, name: str) -> Entry:
        try:
            return super().get(name)
        except UnknownEntryError as exc:
            failed = self._failed(self.kind)
            if not failed:
                raise
            raise UnknownEntryError(self.kind, name, exc.available, failed=failed) from None


class PluginHost:
    """The loaded plugins, their registries and their config contributions."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.registries: dict[str, Registry] = {kind: HostRegistry(kind, self.failed_plugins) for kind in KINDS}
        #: One-line warnings for the user (e.g. a misspelt name in $HAIRLAB_DISABLE_PLUGINS).
        self.warnings: list[str] = []

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
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - even SystemExit at import stays this plugin's
                record.fail(f"import failed: {_describe(exc)}")
                continue
            self._register(plugin, record)
        unknown = sorted(blocked - {r.name for r in self.records.values()})
        if unknown:
            known = ", ".join(sorted({r.name for r in self.records.values()})) or "none"
            self.warn(f"${ENV_DISABLE} names no installed plugin: {', '.join(unknown)} "
                      f"(plugin names: {known}; see `hairlab plugins`)")

    def warn(self, message: str) -> None:
        """Tell the user once, on one stderr line; loading goes on."""
        self.warnings.append(message)
        print(f"hairlab: warning: {message}", file=sys.stderr)

    def register(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> None:
        """Register an in-process plugin object (tests, notebooks).

        A name already taken (e.g. by the installed copy of the same plugin) is a ``ValueError``:
        check ``name in host.records`` first, as docs/plugins.md shows.
        """
        if name in self.records:
            raise ValueError(f"plugin name '{name}' is already registered (from {self.records[name].module})")
        module = getattr(plugin, "__name__", type(plugin).__name__)
        record = PluginRecord(name=name, module=module, distribution=distribution, version=version)
        self.records[name] = record
        self._register(plugin, record)

    def _register(self, plugin: Any, record: PluginRecord) -> None:
        try:
            self.pm.register(plugin, name=record.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - e.g. a hookimpl with a misspelt argument
            record.fail(f"registration failed: {_describe(exc)}")

    def check_pending(self) -> None:
        """pluggy's ``check_pending``, for every plugin rather than up to the first failure.

        A plugin with a hook that no spec knows (a misspelt ``hairlab_optimisers``) would
        silently provide nothing; it is marked failed, with every unknown hook named, and
        unregistered so none of its hooks run half-way.
        """
        unknown: dict[str, list[str]] = {}
        for hook_name, hook in vars(self.pm.hook).items():
            if hook_name.startswith("_") or hook.has_spec():
                continue
            for impl in hook.get_hookimpls():
                if not impl.optionalhook:
                    unknown.setdefault(impl.plugin_name, []).append(hook_name)
        known = ", ".join([*sorted(_KIND_HOOKS.values()), "hairlab_config_searchpath", "hairlab_configure_store"])
        for name, hooks in unknown.items():
            record = self.records.get(name)
            if record is None:
                record = self.records[name] = PluginRecord(name=name)
            record.fail(f"unknown hook(s) {', '.join(sorted(hooks))}; hairlab's hooks are: {known}")
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                self.pm.unregister(plugin)

    def collect(self) -> None:
        """Ask each registered plugin for its entries, one plugin at a time."""
        self.check_pending()
        for kind, hook_name in _KIND_HOOKS.items():
            registry = self.registries[kind]
            for impl, record in self._impls(hook_name):
                for entry in self._call_for_list(impl, record, hook_name, Entry, "hairlab.api.Entry"):
                    try:
                        entry = _with_owner(entry, record)
                        registry.add(entry)
                    except Exception as exc:  # noqa: BLE001 - duplicate or malformed entry
                        record.fail(str(exc), partial=True)
                        continue
                    record.provides.setdefault(kind, []).append(entry.name)
        for impl, record in self._impls("hairlab_config_searchpath"):
            paths = self._call_for_list(impl, record, "hairlab_config_searchpath", (str, os.PathLike), "str")
            record.searchpath.extend(os.fspath(p) for p in paths)

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
        """Call one hookimpl with the arguments it declares, as pluggy does.

        A hookimpl may take fewer arguments than its spec (``def hairlab_configure_store():``
        is legal), so only ``impl.argnames`` are passed.
        """
        try:
            return impl.function(*[kwargs[name] for name in impl.argnames])
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a raising hook (even SystemExit) skips this plugin only
            record.failed_hooks.add(hook_name)
            record.fail(f"{hook_name} raised {_describe(exc)}", partial=True)
            return None

    def _call_for_list(self, impl: Any, record: PluginRecord, hook_name: str, item_type: type | tuple[type, ...],
                       type_name: str) -> list[Any]:
        """The hook's list result; a wrong type is one failure, not one per character or key."""
        result = self._call(impl, record, hook_name)
        if result is None:
            return []
        if not isinstance(result, (list, tuple)):
            record.failed_hooks.add(hook_name)
            record.fail(f"{hook_name} returned {type(result).__name__}, expected list[{type_name}]", partial=True)
            return []
        good = [item for item in result if isinstance(item, item_type)]
        bad = sorted({type(item).__name__ for item in result if not isinstance(item, item_type)})
        if bad:
            record.failed_hooks.add(hook_name)
            record.fail(f"{hook_name} returned {len(result) - len(good)} item(s) of type {', '.join(bad)}, "
                        f"expected list[{type_name}]", partial=True)
        return good

    # -- the build path ----------------------------------------------------------------
    def validate(self, kind: str, node: Any, *, where: str) -> tuple[Entry, dict[str, Any]]:
        """The entry ``node`` names and its checked options (:func:`hairlab.contract.validate`)."""
        from hairlab import contract

        return contract.validate(self, kind, node, where=where)

    def build(self, kind: str, node: Any, *args: Any, where: str, **extra: Any) -> Any:
        """Validate ``node`` against its entry's schema, then build it (:func:`hairlab.contract.build`)."""
        from hairlab import contract

        return contract.build(self, kind, node, *args, where=where, **extra)

    # -- queries -----------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (one of :data:`hairlab.registry.KINDS`)."""
        try:
            return self.registries[kind]
        except KeyError:
            raise HairlabError(f"unknown plugin kind '{kind}'; kinds: {', '.join(KINDS)}") from None

    def failed_plugins(self, kind: str | None = None) -> list[str]:
        """Plugins that failed to load, or whose hook for ``kind`` failed: where a missing entry may be."""
        hook = _KIND_HOOKS.get(kind or "")
        return sorted(r.name for r in self.records.values()
                      if r.status == "failed" or (hook is not None and hook in r.failed_hooks))

    def failure_note(self, kind: str | None = None) -> str:
        """``"; note: plugin 'x' failed to load (hairlab plugins)"`` or ``""``, for unknown-name errors."""
        from hairlab.errors import failed_plugins_note

        return failed_plugins_note(self.failed_plugins(kind))

    def searchpath(self) -> list[str]:
        """Config search-path entries from all healthy plugins, in load order."""
        return [p for r in self.records.values() if r.status != "failed" for p in r.searchpath]

    def distributions(self) -> dict[str, str]:
        """Distribution name to version for every loaded plugin (for run tags)."""
        return {r.distribution: r.version for r in self.records.values() if r.distribution and r.status != "disabled"}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _with_owner(entry: Entry, record: PluginRecord) -> Entry:
    """The entry stamped with the plugin (and distribution, version) that returned it."""
    return dataclasses.replace(entry, plugin=record.name, distribution=record.distribution, version=record.version)


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
