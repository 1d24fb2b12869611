"""The plugin manager contains every kind of plugin failure to the plugin that caused it."""

from __future__ import annotations

import types

import pytest

from hairlab import hookimpl, plugin_manager
from hairlab.errors import UnknownEntryError
from hairlab.plugin_manager import PluginHost
from hairlab.registry import KINDS, Entry


def _plugin(**hooks: object) -> types.SimpleNamespace:
    ns = types.SimpleNamespace()
    for name, fn in hooks.items():
        setattr(ns, name, hookimpl(fn))
    return ns


def _host(*plugins: tuple[str, object]) -> PluginHost:
    host = PluginHost()
    for name, plugin in plugins:
        host.register(plugin, name=name, distribution=f"dist-{name}", version="1.0")
    host.collect()
    return host


def test_entries_are_attributed_to_their_plugin() -> None:
    good = _plugin(hairlab_optimizers=lambda: [Entry("fast", lambda p: p, "Fast.\nMore text.")])
    host = _host(("good", good))
    entry = host.registry("optimizers").get("fast")
    assert entry.plugin == "good"
    assert entry.summary() == "Fast."
    assert host.records["good"].provides == {"optimizers": ["fast"]}
    assert host.records["good"].kinds == ["optimizers"]


def test_duplicate_name_first_owner_wins_and_clash_is_reported() -> None:
    first = _plugin(hairlab_blocks=lambda: [Entry("conv", lambda *a: "first", "1")])
    second = _plugin(hairlab_blocks=lambda: [Entry("conv", lambda *a: "second", "2"),
                                             Entry("other", lambda *a: "other", "3")])
    host = _host(("first", first), ("second", second))
    assert host.registry("blocks").create("conv") == "first"
    rec = host.records["second"]
    assert rec.status == "partial"
    assert "already provided by plugin 'first'" in rec.reason
    assert host.registry("blocks").names() == ["conv", "other"]


def test_raising_hook_skips_only_that_plugin() -> None:
    def boom() -> list[Entry]:
        raise RuntimeError("kaput")

    bad = _plugin(hairlab_heads=boom)
    good = _plugin(hairlab_heads=lambda: [Entry("gap", lambda *a: None, "GAP")])
    host = _host(("bad", bad), ("good", good))
    assert "hairlab_heads raised RuntimeError: kaput" in host.records["bad"].reason
    assert host.registry("heads").names() == ["gap"]


def test_wrong_return_type_is_reported() -> None:
    host = _host(("odd", _plugin(hairlab_datasets=lambda: ["not an entry"])))
    assert "expected hairlab.registry.Entry" in host.records["odd"].reason


def test_unknown_hook_is_reported_not_fatal() -> None:
    host = _host(("typo", _plugin(hairlab_optimisers=lambda: [])))
    assert host.records["typo"].status == "failed"
    assert "unknown hook" in host.records["typo"].reason


def test_unknown_name_lists_alternatives() -> None:
    host = _host(("p", _plugin(hairlab_optimizers=lambda: [Entry("adam", print, "a"), Entry("sgd", print, "s")])))
    with pytest.raises(UnknownEntryError) as info:
        host.registry("optimizers").get("adamw")
    assert "unknown optimizers entry 'adamw'; available: adam, sgd" in str(info.value)


def test_names_use_fnmatch() -> None:
    host = _host(("p", _plugin(hairlab_blocks=lambda: [Entry(n, print, n) for n in ("dw_a", "dw_b", "conv")])))
    assert host.registry("blocks").names("dw*") == ["dw_a", "dw_b"]


def test_builtins_arrive_through_entry_points() -> None:
    plugin_manager.reset()
    host = plugin_manager.get_host()
    builtins = {r.name: r for r in host.records.values() if r.distribution == "hairlab"}
    assert {"hairnet", "optim", "datasets", "hardware"} <= set(builtins)
    assert all(r.status == "ok" for r in builtins.values()), {n: r.reason for n, r in builtins.items()}
    assert "adam" in host.registry("optimizers")


def test_disable_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugin_manager.ENV_DISABLE, "optim")
    plugin_manager.reset()
    try:
        host = plugin_manager.get_host()
        assert host.records["optim"].status == "disabled"
        assert "adam" not in host.registry("optimizers")
    finally:
        plugin_manager.reset()


def test_autoload_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugin_manager.ENV_NO_AUTOLOAD, "1")
    plugin_manager.reset()
    try:
        host = plugin_manager.get_host()
        assert host.records == {}
        assert all(len(host.registry(k)) == 0 for k in KINDS)
    finally:
        plugin_manager.reset()
