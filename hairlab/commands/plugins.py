"""``hairlab plugins``, ``hairlab list KIND [PATTERN]`` and ``hairlab list KIND NAME``."""

from __future__ import annotations

import json
from typing import Any

import typer

from hairlab.errors import HairlabError
from hairlab.plugin_manager import PluginHost, PluginRecord
from hairlab.registry import KINDS, Entry

FORMATS = ("table", "csv", "json", "markdown")
_STATUS_STYLE = {"ok": "green", "partial": "yellow", "failed": "red", "disabled": "dim"}
_WILDCARDS = set("*?[")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise HairlabError(f"--format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")


def _emit(columns: list[str], rows: list[dict[str, Any]], fmt: str, title: str, *, width: int = 140) -> None:
    """One table in any of the CLI's formats (csv, json, markdown: the renderer `hairlab compare` uses)."""
    from hairlab.tracking.summary import fmt_cell, render

    if fmt != "table":
        typer.echo(render(columns, rows, fmt), nl=False)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title or None)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        cells = [escape(fmt_cell(row.get(c))) for c in columns]
        style = _STATUS_STYLE.get(str(row.get("status", "")).split(":", 1)[0], "")
        if "status" in columns and style:
            i = columns.index("status")
            cells[i] = f"[{style}]{cells[i]}[/{style}]"
        table.add_row(*cells)
    Console(width=max(Console().width, width)).print(table)


def plugin_rows(host: PluginHost) -> list[dict[str, Any]]:
    """One row per plugin, failed and disabled ones included, with the reason."""
    rows = []
    for rec in sorted(host.records.values(), key=lambda r: (r.distribution != "hairlab", r.name)):
        rows.append({"plugin": rec.name, "kinds": ", ".join(rec.kinds) or "-", "provides": _provides(rec),
                     "distribution": rec.distribution or "-", "version": rec.version or "-",
                     "status": rec.status, "reason": rec.reason, "module": rec.module,
                     "searchpath": ", ".join(rec.searchpath)})
    return rows


def _provides(rec: PluginRecord) -> str:
    parts = [f"{k}: {', '.join(v)}" for k, v in rec.provides.items() if v]
    if rec.searchpath:
        parts.append("configs: " + ", ".join(rec.searchpath))
    return "; ".join(parts) or "-"


def show_plugins(host: PluginHost, fmt: str = "table") -> None:
    """Print every plugin: kinds, what it provides, distribution, version, status."""
    _check_format(fmt)
    rows = plugin_rows(host)
    if fmt == "json":
        data = [{**row, "kinds": host.records[row["plugin"]].kinds,
                 "provides": host.records[row["plugin"]].provides,
                 "searchpath": host.records[row["plugin"]].searchpath} for row in rows]
        typer.echo(json.dumps(data, indent=1))
        return
    if fmt == "table":
        for row in rows:  # the reason beside the status reads best in a terminal
            row["status"] = row["status"] + (f": {row['reason']}" if row["reason"] else "")
            row["provides"] = row["provides"].replace("; ", "\n")
        columns = ["plugin", "kinds", "provides", "distribution", "version", "status"]
    else:
        columns = ["plugin", "kinds", "provides", "distribution", "version", "status", "reason"]
    _emit(columns, rows, fmt, "hairlab plugins")


def list_entries(host: PluginHost, kind: str, pattern: str = "*", fmt: str = "table") -> None:
    """The entries of ``kind`` matching ``pattern``; an exact name shows that entry's options."""
    _check_format(fmt)
    if kind not in KINDS:
        raise HairlabError(f"unknown plugin kind '{kind}'; choose one of: {', '.join(KINDS)}")
    reg = host.registry(kind)
    if not _WILDCARDS & set(pattern) and pattern != "*":
        show_entry(host, kind, reg.get(pattern), fmt)  # an unknown name lists the alternatives
        return
    names = reg.names(pattern)
    if not names:
        raise HairlabError(
            f"no {kind} match '{pattern}'; available: {', '.join(reg.names()) or 'none'}"
            + host.failure_note(kind))
    rows = [{"name": n, "description": reg.get(n).summary(), "plugin": reg.get(n).plugin} for n in names]
    _emit(["name", "description", "plugin"], rows, fmt, f"{kind} matching '{pattern}'", width=120)


def entry_options(entry: Entry, kind: str) -> list[dict[str, Any]]:
    """``option, type, default, help`` of each option, from the entry's schema.

    Without a schema, the contract reads the factory's keyword parameters (what the build
    path checks against), so the listing and the check never disagree.
    """
    from hairlab.contract import options, schema_of

    rows = []
    for o in options(schema_of(entry, kind)):
        if o.name == "name":
            continue
        default = "(required)" if o.required else _shown(o.default)
        rows.append({"option": o.name, "type": o.type, "default": default, "help": o.help})
    return rows


def _shown(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def show_entry(host: PluginHost, kind: str, entry: Entry, fmt: str) -> None:
    """One entry: who provides it, what it is, and every option with type, default and help."""
    rows = entry_options(entry, kind)
    rec = host.records.get(entry.plugin)
    dist = f"{rec.distribution} {rec.version}".strip() if rec else ""
    owner = f"plugin {entry.plugin}" + (f", {dist}" if dist else "")
    if fmt == "json":
        typer.echo(json.dumps({"kind": kind, "name": entry.name, "plugin": entry.plugin,
                               "distribution": rec.distribution if rec else "",
                               "version": rec.version if rec else "", "description": entry.description,
                               "options": rows}, indent=1))
        return
    columns = ["option", "type", "default", "help"]
    for row in rows:
        row["default"] = "null" if row["default"] is None else row["default"]  # as a YAML override spells it
    if fmt == "table":
        from rich.console import Console

        console = Console()
        console.print(f"[bold]{kind} '{entry.name}'[/bold] ({owner})")
        for line in entry.description.strip().splitlines():
            console.print(f"  {line}", highlight=False)
        if not rows:
            console.print("  no options")
            return
        _emit(columns, rows, fmt, f"options ({kind}.{entry.name})", width=120)
        return
    if fmt == "markdown":
        typer.echo(f"**{kind} `{entry.name}`** ({owner}): {entry.summary()}\n")
    _emit(columns, rows, fmt, "")
