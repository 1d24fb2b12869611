"""Check a config's options against a registry entry's ``schema`` dataclass.

Hydra hands over whatever the user typed (``optimizer.lr=abc`` arrives as the string
``"abc"``), and a factory failing deep inside torch gives a poor message. Checking the keys
and types up front turns that into one line naming the key, the value and the expected type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from hairlab.errors import HairlabError
from hairlab.registry import Entry


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` converted to ``tp`` where that is unambiguous; ``ValueError`` otherwise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except ValueError:
                continue
        raise ValueError
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return [_coerce(v, item) for v in value]
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
        raise ValueError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError


def validate_options(entry: Entry, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``options`` checked against ``entry.schema`` and coerced; unchanged when it has none.

    ``where`` is the config path of the options (``optimizer``, ``model.stages[2]``) so the
    message names the exact key to fix.
    """
    opts = dict(options)
    schema = entry.schema
    if schema is None or not dataclasses.is_dataclass(schema):
        return opts
    hints = typing.get_type_hints(schema)
    fields = {f.name for f in dataclasses.fields(schema)}
    for key, value in opts.items():
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "none"
            raise HairlabError(
                f"{where}.{key} is not an option of {entry.name!r}; valid options: {valid}"
            )
        tp = hints.get(key, Any)
        try:
            opts[key] = _coerce(value, tp)
        except (ValueError, TypeError):
            raise HairlabError(
                f"{where}.{key}={value!r} is not a valid {_type_name(tp)} (option of {entry.name!r}); "
                f"set e.g. {where}.{key}={_example(tp)}"
            ) from None
    return opts


def _example(tp: Any) -> str:
    default = {bool: "true", int: "3", float: "0.01", str: "abc"}
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        tp = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    if typing.get_origin(tp) in (list, tuple):
        return "[1,2]"
    return default.get(tp, "...")
