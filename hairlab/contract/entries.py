"""The one build path: a config node -> its entry -> schema check -> factory.

Every kind goes through :func:`build` (optimizers, datasets, hardware targets at the top level,
blocks and heads nested in a model config); the core's own settings (trainer, tracking) go
through :func:`settings`, with the same checks and messages. A failure names what failed and
who owns it, so a user knows which package to look at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hairlab.contract.convert import to_dict
from hairlab.contract.schema import check, derive, instance
from hairlab.errors import HairlabError
from hairlab.registry import KIND_SPECS, kind_spec

if TYPE_CHECKING:
    from hairlab.plugin_manager import PluginHost
    from hairlab.registry import Entry

#: Config group of each top-level kind (blocks and heads live inside ``model``).
GROUPS = {k.name: k.group for k in KIND_SPECS if k.group is not None}


def schema_of(entry: Entry, kind: str) -> type | None:
    """The entry's schema, or one read from its factory's keyword parameters."""
    if entry.schema is not None:
        return entry.schema
    spec = kind_spec(kind)
    return derive(entry.factory, spec.positional, spec.contract)


def owner(entry: Entry, kind: str, host: PluginHost | None = None) -> str:
    """``optimizer 'adam' (plugin optim, hairlab 0.1.0)``: the entry and who provides it."""
    plugin, dist, version = entry.plugin or "?", entry.distribution, entry.version
    if not dist and host is not None:
        record = host.records.get(plugin)
        if record is not None:
            dist, version = record.distribution, record.version
    where = f"plugin {plugin}" + (f", {dist} {version}".rstrip() if dist else "")
    return f"{kind_spec(kind).word} '{entry.name}' ({where})"


def split_name(node: Any, kind: str, where: str) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a config node that names its entry with ``name``."""
    if isinstance(node, str):
        return node, {}
    opts = to_dict(node)
    name = opts.pop("name", None)
    if not name:
        group = GROUPS.get(kind)
        how = f"choose one with {group}=NAME" if group and where == group else f"set {where}.name=NAME"
        raise HairlabError(f"{where}.name is missing; {how} (see `hairlab list {kind}`)")
    return str(name), opts


def validate(host: PluginHost, kind: str, node: Any, *, where: str) -> tuple[Entry, dict[str, Any]]:
    """The entry ``node`` names and its options, checked and completed from the schema.

    Nothing is built: this is what :func:`hairlab.contract.check_config` runs before a job.
    """
    name, opts = split_name(node, kind, where)
    entry = host.registry(kind).get(name)
    return entry, check(schema_of(entry, kind), opts, where=where, owner=owner(entry, kind, host))


def build(host: PluginHost, kind: str, node: Any, *args: Any, where: str, **extra: Any) -> Any:
    """Validate ``node`` against its entry's schema, then call the factory with ``args``.

    ``extra`` are contract keywords that are not options (a block's ``stride``). An exception
    raised by the factory (other than a :class:`HairlabError`, already worded for users) is
    reported with the entry's kind, name and plugin.
    """
    entry, opts = validate(host, kind, node, where=where)
    return call(entry, kind, opts, *args, host=host, **extra)


def call(entry: Entry, kind: str, opts: Mapping[str, Any], *args: Any, host: PluginHost | None = None,
         **extra: Any) -> Any:
    """The factory call of :func:`build`, for options already validated (a block built N times)."""
    return guarded(entry, kind, host, "failed to build", lambda: entry.factory(*args, **extra, **opts))


def guarded(entry: Entry, kind: str, host: PluginHost | None, failure: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, a call of one of the entry's own functions; what it raises becomes one line,
    ``<entry and plugin> <failure>: <exception>``.

    ``fn`` takes no arguments, so building the call's keywords (an option named like a contract
    keyword: ``stride`` twice) fails inside the guard too, worded like any other failure.
    """
    try:
        return fn()
    except (HairlabError, KeyboardInterrupt):  # worded for users already; Ctrl-C and signals pass
        raise
    except BaseException as exc:  # even SystemExit: a broken plugin cannot end hairlab
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise HairlabError(f"{owner(entry, kind, host)} {failure}: {type(exc).__name__}"
                           f"{': ' + text if text else ''}") from exc


def settings(schema: type, node: Any, *, where: str) -> Any:
    """A core settings node (``trainer``, ``tracking``) as its schema object, checked."""
    return instance(schema, to_dict(node), where=where, owner=f"{where} settings of hairlab")
