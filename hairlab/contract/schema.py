"""An entry's options, read from its ``schema`` dataclass, and a value checker against them.

Hydra hands over whatever the user typed (``optimizer.lr=abc`` arrives as the string
``"abc"``), and a factory failing deep inside torch gives a poor message. Checking keys, types
and ranges up front turns that into one line naming the key, the value, what was expected and
who owns the option. Ranges are the schema's own: its ``__post_init__`` raises ``ValueError``.

Help for an option is field metadata, ``field(default=..., metadata={"help": "one line"})``;
:func:`options` hands it to ``hairlab list KIND NAME``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

from hairlab.errors import HairlabError

#: Metadata key of an option's one-line help.
HELP = "help"


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of an entry, for listings: name, type (as text), default, one-line help."""

    name: str
    type: str
    default: Any
    help: str = ""
    required: bool = False


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with one-line ``help`` (shorthand for ``field(metadata={"help": ...})``)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={HELP: help})
    return dataclasses.field(default=default, metadata={HELP: help})


def hints(schema: type) -> dict[str, Any]:
    """Resolved type hints of a schema (string annotations included)."""
    try:
        return typing.get_type_hints(schema)
    except Exception:  # noqa: BLE001 - an unresolvable annotation is checked as Any
        return {f.name: (f.type if not isinstance(f.type, str) else Any) for f in dataclasses.fields(schema)}


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def options(schema: type | None) -> list[Option]:
    """The options a schema declares, in declaration order (empty without a schema)."""
    if schema is None or not dataclasses.is_dataclass(schema):
        return []
    tps = hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        default = default_of(f)
        required = default is dataclasses.MISSING
        out.append(Option(f.name, type_name(tps.get(f.name, Any)), None if required else default,
                          str(f.metadata.get(HELP, "")), required))
    return out


def derive(factory: Callable[..., Any], skip: int, skip_names: tuple[str, ...] = ()) -> type | None:
    """A schema from a factory's keyword parameters, for entries that declare none.

    ``skip`` leading positional parameters belong to the kind's call contract (a block's
    channels, an optimizer's params). A factory taking only ``**options`` cannot be read:
    None, and its options go through unchecked.
    """
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    tps = hints_of_function(factory)
    fields = []
    positional = 0
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional < skip:
            positional += 1
            continue
        if p.name in skip_names:
            continue
        default = dataclasses.field() if p.default is p.empty else _field_default(p.default)
        fields.append((p.name, tps.get(p.name, Any), default))
    if not fields and any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    name = getattr(factory, "__name__", "factory")
    return dataclasses.make_dataclass(f"{name}_options", fields)


def hints_of_function(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001
        return {}


def _field_default(value: Any) -> Any:
    if isinstance(value, (list, dict, set)):
        return dataclasses.field(default_factory=_copier(value))
    return dataclasses.field(default=value)


def _copier(value: Any) -> Callable[[], Any]:
    """A default factory giving a fresh copy of a mutable default each time."""
    return lambda: type(value)(value)


# -- checking ---------------------------------------------------------------------------------
def check(schema: type | None, options: Mapping[str, Any], *, where: str, owner: str) -> dict[str, Any]:
    """``options`` checked against ``schema`` and completed with its defaults.

    ``where`` is the config path of the options (``optimizer``, ``model.stages[2]``) so the
    message names the exact key to fix; ``owner`` names the entry and plugin
    (``optimizer 'adam' (plugin optim, hairlab 0.1)``). Without a schema the options pass
    through unchanged.
    """
    # OmegaConf's "???" (a required option nobody set) counts as not given
    opts = {k: v for k, v in options.items() if not (isinstance(v, str) and v == "???")}
    if schema is None or not dataclasses.is_dataclass(schema):
        return opts
    tps = hints(schema)
    names = [f.name for f in dataclasses.fields(schema) if f.init]
    for key, value in opts.items():
        if key not in names:
            valid = ", ".join(sorted(names)) or "none"
            raise HairlabError(f"{where}.{key} is not an option of {owner}; valid options: {valid}")
        tp = tps.get(key, Any)
        nested = _nested(tp)
        if nested is not None and isinstance(value, Mapping):  # e.g. trainer.early_stop={patience: 5}
            opts[key] = nested(**check(nested, value, where=f"{where}.{key}", owner=owner))
            continue
        try:
            opts[key] = coerce(value, tp)
        except (ValueError, TypeError):
            raise HairlabError(
                f"{where}.{key}={_show(value)}: expected {type_name(tp)} ({owner}); "
                f"set e.g. {where}.{key}={example(tp)}"
            ) from None
    missing = [f.name for f in dataclasses.fields(schema)
               if f.init and f.name not in opts and default_of(f) is dataclasses.MISSING]
    if missing:
        raise HairlabError(f"{where}.{missing[0]} is required by {owner}; set {where}.{missing[0]}=...")
    try:
        instance = schema(**opts)
    except (ValueError, TypeError) as exc:
        raise HairlabError(f"{_qualify(str(exc), where, names)} ({owner})") from None
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(schema) if f.init}


def instance(schema: type, options: Mapping[str, Any], *, where: str, owner: str) -> Any:
    """The schema object for ``options`` (a core settings node such as the trainer's)."""
    return schema(**check(schema, options, where=where, owner=owner))


def _nested(tp: Any) -> type | None:
    """The dataclass ``tp`` is (or that its union holds): an option that is itself a group of options."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    return next((a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a)), None)


def _qualify(message: str, where: str, names: list[str]) -> str:
    """A ``__post_init__`` message as a full config path: ``lr=-1: ...`` -> ``optimizer.lr=-1: ...``."""
    import re

    text = message.strip().splitlines()[0] if message.strip() else "invalid options"
    if not where or text.startswith((f"{where}.", f"{where}:")):
        return text
    first = re.match(r"[A-Za-z_]\w*", text)
    if first and first.group(0) in names:
        return f"{where}.{text}"
    return f"{where}: {text}"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def type_name(tp: Any) -> str:
    """``float``, ``int or null``, ``list[int]``, ``'a' | 'b'``: a type as a user reads it."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any value"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a group of options: its keys
        return "{" + ", ".join(f.name for f in dataclasses.fields(tp)) + "}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """``value`` converted to ``tp`` where that is unambiguous; ``ValueError`` otherwise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ValueError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError
        for arg in sorted(args, key=_strictness):  # bool before int before float before str
            try:
                return coerce(value, arg)
            except (ValueError, TypeError):
                continue
        raise ValueError
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return [coerce(v, item) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ValueError
        return dict(value)
    if tp is type(None):
        if value is None:
            return None
        raise ValueError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)  # "1e-3" parses; "abc" raises ValueError
        raise ValueError
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # run_name=2024
        if isinstance(value, os.PathLike):
            return os.fspath(value)  # type: ignore[return-value]
        raise ValueError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError


def _strictness(tp: Any) -> int:
    order = {type(None): 0, bool: 1, int: 2, float: 3, str: 5}
    return order.get(tp, 4)


def example(tp: Any) -> str:
    default = {bool: "true", int: "3", float: "0.01", str: "abc"}
    origin = typing.get_origin(tp)
    if origin is Literal:
        return str(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        tp = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
        origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return "[1,2]"
    if origin is Literal:
        return str(typing.get_args(tp)[0])
    return default.get(tp, "...")
