"""``hairlab plugins`` and ``hairlab list``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from hairlab.errors import HairlabError
from hairlab.plugin_manager import get_host
from hairlab.registry import KINDS

_STATUS_STYLE = {"ok": "green", "partial": "yellow", "failed": "red", "disabled": "dim"}


def show_plugins() -> None:
    """Print one row per plugin, including failed and disabled ones with the reason."""
    host = get_host()
    table = Table(title="hairlab plugins")
    for col in ("plugin", "kinds", "provides", "distribution", "version", "status"):
        table.add_column(col, overflow="fold")
    for rec in sorted(host.records.values(), key=lambda r: (r.distribution != "hairlab", r.name)):
        provides = "\n".join(f"{k}: {', '.join(v)}" for k, v in rec.provides.items() if v)
        if rec.searchpath:
            provides += ("\n" if provides else "") + "configs: " + ", ".join(rec.searchpath)
        style = _STATUS_STYLE.get(rec.status, "")
        status = rec.status + (f": {rec.reason}" if rec.reason else "")
        table.add_row(
            rec.name, ", ".join(rec.kinds) or "-", provides or "-", rec.distribution or "-",
            rec.version or "-", f"[{style}]{status}[/{style}]" if style else status,
        )
    Console(width=max(Console().width, 140)).print(table)


def list_entries(kind: str, pattern: str = "*") -> None:
    """Print the entries of ``kind`` whose names match ``pattern``."""
    if kind not in KINDS:
        raise HairlabError(f"unknown plugin kind '{kind}'; choose one of: {', '.join(KINDS)}")
    reg = get_host().registry(kind)
    names = reg.names(pattern)
    if not names:
        raise HairlabError(
            f"no {kind} match '{pattern}'; available: {', '.join(reg.names()) or 'none'}"
        )
    table = Table(title=f"{kind} matching '{pattern}'")
    for col in ("name", "description", "plugin"):
        table.add_column(col, overflow="fold")
    for name in names:
        entry = reg.get(name)
        table.add_row(name, entry.summary(), entry.plugin)
    Console(width=max(Console().width, 120)).print(table)
