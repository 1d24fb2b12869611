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
    assert "expected list[hairlab.api.Entry]" in host.records["odd"].reason


@pytest.mark.parametrize("value", ["a string of many characters", {"a": 1, "b": 2}, 42])
def test_wrong_return_type_is_reported_once(value: object) -> None:
    good = _plugin(hairlab_heads=lambda: [Entry("gap", print, "GAP")])
    host = _host(("odd", _plugin(hairlab_heads=lambda: value, hairlab_config_searchpath=lambda: "pkg://x")),
                 ("good", good))
    rec = host.records["odd"]
    assert rec.status == "partial"
    assert rec.reason.count("hairlab_heads returned") == 1, rec.reason
    assert f"returned {type(value).__name__}, expected list[hairlab.api.Entry]" in rec.reason
    assert rec.reason.count("hairlab_config_searchpath returned str, expected list[str]") == 1
    assert rec.searchpath == [] and host.registry("heads").names() == ["gap"]


def test_mixed_list_keeps_the_entries_and_reports_the_rest_once() -> None:
    host = _host(("mixed", _plugin(hairlab_blocks=lambda: [Entry("ok", print, "ok"), "x", "y", 3])))
    rec = host.records["mixed"]
    assert host.registry("blocks").names() == ["ok"]
    assert rec.reason == "hairlab_blocks returned 3 item(s) of type int, str, expected list[hairlab.api.Entry]"


def test_unknown_hook_is_reported_not_fatal() -> None:
    host = _host(("typo", _plugin(hairlab_optimisers=lambda: [])))
    assert host.records["typo"].status == "failed"
    assert "unknown hook" in host.records["typo"].reason


def test_every_plugin_with_an_unknown_hook_is_reported() -> None:
    """check_pending per plugin: not only the first offender, and every bad hook is named."""
    one = _plugin(hairlab_optimisers=lambda: [], hairlab_blocks=lambda: [Entry("b1", print, "b")])
    two = _plugin(hairlab_dataset=lambda: [], hairlab_hedas=lambda: [])
    good = _plugin(hairlab_blocks=lambda: [Entry("b2", print, "b")])
    host = _host(("one", one), ("two", two), ("good", good))
    assert host.records["one"].status == "failed" and "hairlab_optimisers" in host.records["one"].reason
    assert host.records["two"].status == "failed"
    assert "hairlab_dataset, hairlab_hedas" in host.records["two"].reason
    # A failed plugin provides nothing, not half of what it meant to; the others are untouched.
    assert host.registry("blocks").names() == ["b2"] and host.records["good"].status == "ok"


def test_hookimpl_may_take_fewer_arguments_than_its_spec() -> None:
    seen: list[str] = []

    class Plugin:
        @hookimpl
        def hairlab_configure_store(self) -> None:  # the spec passes `store`; we need none
            seen.append("called")

    host = _host(("lean", Plugin()))
    host.configure_store(object())
    assert seen == ["called"] and host.records["lean"].status == "ok", host.records["lean"].reason


@pytest.mark.parametrize("exc", [SystemExit(0), SystemExit(3), GeneratorExit()])
def test_hook_raising_base_exception_is_contained(exc: BaseException) -> None:
    def boom() -> list[Entry]:
        raise exc

    host = _host(("bad", _plugin(hairlab_heads=boom)),
                 ("good", _plugin(hairlab_heads=lambda: [Entry("gap", print, "GAP")])))
    assert f"hairlab_heads raised {type(exc).__name__}" in host.records["bad"].reason
    assert host.registry("heads").names() == ["gap"]


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def stop() -> list[Entry]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _host(("ctrl_c", _plugin(hairlab_heads=stop)))


def test_unknown_name_notes_plugins_that_failed() -> None:
    def boom() -> list[Entry]:
        raise ImportError("no module named mobilenet_deps")

    host = _host(("mobilenet", _plugin(hairlab_optimizers=boom)),
                 ("p", _plugin(hairlab_optimizers=lambda: [Entry("adam", print, "a")])))
    with pytest.raises(UnknownEntryError) as info:
        host.registry("optimizers").get("mobile_sgd")
    msg = str(info.value)
    assert msg.startswith("unknown optimizers entry 'mobile_sgd'; available: adam")
    assert msg.endswith("; note: plugin 'mobilenet' failed to load (hairlab plugins)")
    assert info.value.failed == ["mobilenet"]
    # Another kind is not that plugin's business: no note there.
    with pytest.raises(UnknownEntryError) as other:
        host.registry("heads").get("x")
    assert "note" not in str(other.value)
    assert host.failure_note("optimizers") == "; note: plugin 'mobilenet' failed to load (hairlab plugins)"


def test_misspelt_disabled_name_is_one_warning_line(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost()
    host.load_entrypoints(["optim", "hardwear"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("hairlab: warning: $HAIRLAB_DISABLE_PLUGINS names no installed plugin: hardwear")
    assert "hardware" in err[0] and "optim" in err[0]
    assert host.records["optim"].status == "disabled"


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


def test_registering_a_taken_name_is_refused_not_clobbered() -> None:
    host = _host(("p", _plugin(hairlab_optimizers=lambda: [Entry("adam", print, "a")])))
    with pytest.raises(ValueError, match="plugin name 'p' is already registered"):
        host.register(_plugin(hairlab_optimizers=lambda: []), name="p")
    assert host.records["p"].status == "ok" and "adam" in host.registry("optimizers")


def test_searchpath_accepts_strings_and_paths() -> None:
    from pathlib import Path

    host = _host(("conf", _plugin(hairlab_config_searchpath=lambda: ["pkg://a.conf", Path("/opt/conf")])))
    assert host.records["conf"].status == "ok" and host.records["conf"].searchpath == ["pkg://a.conf", "/opt/conf"]
