"""The host target's fitted per-kind model, its calibration cache and its probes (no timed assertions)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli
from torch import nn

from hairlab.costmodel import calibrate, hostfit
from hairlab.costmodel.engine import estimate
from hairlab.costmodel.layers import extract_layers

CACHES = {"L2": 2**20, "L3": 32 * 2**20}


def _conv_dims(rng: random.Random) -> dict[str, float]:
    cin, cout = rng.choice([3, 16, 64, 256]), rng.choice([16, 32, 128, 512])
    hw, k, batch = rng.choice([7, 14, 28, 56, 112]), rng.choice([1, 3, 5]), rng.choice([1, 8])
    return hostfit.dims("conv", batch, (cin, hw, hw), (cout, hw, hw), params=cin * cout * k * k,
                        kernel=(k, k), in_channels=cin, out_channels=cout)


def test_fit_recovers_known_parameters_from_synthetic_timings() -> None:
    """Timings made from known costs (one of them zero) give those costs back."""
    rng = random.Random(0)
    truth = {"one": 2e-5, "macs": 3e-11, "out": 4e-10, "im2col": 1e-10, "in": 0.0, "params": 2e-9, "fresh": 5e-10}
    coef = [truth[f] for f in hostfit.FEATURES["conv"]]
    samples = []
    for _ in range(40):
        d = _conv_dims(rng)
        t = sum(c * v for c, v in zip(coef, hostfit.feature_vector("conv", d, CACHES), strict=True))
        samples.append({"kind": "conv", "dims": d, "time_s": t})
    model = hostfit.fit(samples, CACHES)["conv"]
    assert model["features"] == list(hostfit.FEATURES["conv"])
    for name, got in zip(model["features"], model["coef"], strict=True):
        assert got >= 0 and got == pytest.approx(truth[name], rel=1e-6, abs=1e-15), name
    assert model["median_rel_err"] < 1e-9


def test_fit_never_returns_a_negative_cost() -> None:
    """Noisy timings that an unconstrained fit would answer with a negative coefficient."""
    rng = random.Random(1)
    samples = [{"kind": "relu", "dims": hostfit.dims("relu", 1, (c, s, s), (c, s, s)),
                "time_s": 5e-6 * rng.uniform(0.5, 1.5) + 1e-10 * c * s * s}
               for c in (8, 64, 512) for s in (4, 16, 64)]
    model = hostfit.fit(samples, CACHES)["relu"]
    assert all(c >= 0 for c in model["coef"]) and model["coef"][0] > 0


def test_bandwidth_probe_writes_its_buffers() -> None:
    """A never-written torch.empty buffer reads the zero page: both probe buffers hold written values."""
    src, dst = calibrate.probe_buffers(1 << 16)
    assert src.numel() == dst.numel() == 1 << 14
    assert bool((src != 0).all()) and bool((dst != 0).all())
    assert calibrate.bandwidth_probe(1 << 16, calibrate.clock_for(1), repeats=2) > 0


def _fake_measure(threads: int | None = None, quick: bool = False) -> dict[str, Any]:
    return {"version": calibrate.VERSION, "cpu": calibrate.cpu_model(), "threads": threads, "torch": "x",
            "measured_at": "2026-12-01 12:00:00 UTC", "loadavg": 1.5, "quick": quick}


def test_calibration_cache_is_keyed_by_threads_and_keeps_its_facts(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path))
    calls: list[int | None] = []
    monkeypatch.setattr(calibrate, "measure", lambda threads=None, quick=False: (
        calls.append(threads), _fake_measure(threads, quick))[1])
    one, two = calibrate.calibration(1), calibrate.calibration(2)
    assert calls == [1, 2] and one["threads"] == 1 and two["threads"] == 2
    files = sorted(calibrate.cache_dir().glob("*.json"))
    assert len(files) == 2 and one["cache_file"] != two["cache_file"]
    with calibrate.cached_only():  # read back, nothing measured
        again = calibrate.calibration(2)
    assert calls == [1, 2] and again["threads"] == 2 and again["measured_at"] == "2026-12-01 12:00:00 UTC"
    assert json.loads(Path(two["cache_file"]).read_text())["loadavg"] == 1.5
    with calibrate.cached_only(), pytest.raises(calibrate.CalibrationUnavailable):
        calibrate.calibration(3)


def test_quick_calibration_records_its_facts_and_fits_every_kind(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path))
    data = calibrate.calibration(1)  # HAIRLAB_CALIBRATION=quick (conftest): a few seconds
    assert data["quick"] and data["threads"] == 1 and data["cpu"] == calibrate.cpu_model()
    assert data["clock"] == "thread CPU time" and data["memory_format"] == "channels_last"
    assert data["measured_at"] and "before" in data["loadavgs"] and data["seconds"] > 0
    assert {"conv", "pwconv", "dwconv", "dense", "bn", "relu", "maxpool", "gap", "softmax"} <= set(data["fit"])
    assert all(v > 0 for v in data["bandwidths"].values()) and data["bandwidth"] == data["bandwidths"]["DRAM"]
    assert data["page_fault_s_per_byte"] >= 0 and data["fresh_map_bytes"] == calibrate.FRESH_MAP_BYTES
    assert data["runs"] >= 2 and data["runs_skipped_over_budget"] == 0
    assert "quick" in Path(data["cache_file"]).name


def _fake_calibration(fit: dict[str, Any]) -> dict[str, Any]:
    return {"threads": 1, "cpu": "test cpu", "torch": "2", "bandwidth": 1e10, "gemm_flops": 1e11,
            "generic_flops": 1e9, "layer_overhead_s": 1e-5, "conv_flops": 1e10, "pwconv_flops": 1e10,
            "dwconv_flops": 1e9, "bn_flops": 1e9, "relu_flops": 1e9, "pool_flops": 1e9, "caches": CACHES,
            "measured_at": "2026-12-01 12:00:00", "loadavg": 1.0, "cache_file": "x.json", "fit": fit}


def test_host_target_predicts_what_the_fitted_model_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from hairlab_plugins.hardware.host import host

    fit = {kind: {"features": list(feats), "coef": [1e-5 * (i + 1)] + [1e-9] * (len(feats) - 1)}
           for i, (kind, feats) in enumerate(hostfit.FEATURES.items())}
    monkeypatch.setattr(calibrate, "calibration", lambda threads, refresh=False: _fake_calibration(fit))
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8),
                          nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    layers = extract_layers(model, (3, 16, 16))
    target = host(batch_size=8)
    assert target.layer_time is not None and "fitted" in target.mode
    report = estimate(layers, target)
    rows = hostfit.mark_previous([layer.copy() for layer in layers])
    for row, layer in zip(report.rows, rows, strict=True):
        parts = hostfit.predict_parts(fit, layer.kind, hostfit.layer_dims(layer, 8), CACHES)
        assert parts is not None
        assert row.total_time_s == pytest.approx(sum(parts)) and row.transfer_time_s == pytest.approx(parts[0])
    # A rate given by hand means the rate model: the fit would ignore it.
    rated = host(conv_flops=1e12)
    assert rated.layer_time is None and "rates" in rated.mode
    assert estimate(layers, rated).totals["latency_s"] != report.totals["latency_s"]
    # An older calibration without a fit still builds, on rates.
    monkeypatch.setattr(calibrate, "calibration", lambda threads, refresh=False: _fake_calibration({}))
    assert host().layer_time is None


def test_measure_takes_the_hooks_cost_out() -> None:
    from hairlab.costmodel.measure import measure_model

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Identity())
    m = measure_model(model, (3, 8, 8), threads=1, repeats=3, warmup=1)
    assert m.method == "hooks" and m.hook_overhead_s > 0 and m.channels_last
    assert set(m.per_module_s) == {"0", "1", "2"} and all(v[0] > 0 for v in m.per_module_s.values())
    assert m.total_iqr >= 0 and m.cpu_median_s > 0
    assert next(model.parameters()).is_contiguous()  # memory format restored
    alone = measure_model(model, (3, 8, 8), threads=1, repeats=3, warmup=1, method="alone", samples=3)
    assert alone.method == "alone" and all(v[0] > 0 for v in alone.per_module_s.values())
    torch.set_num_threads(torch.get_num_threads())


def test_hw_report_on_the_host_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "host.json"
    res = run_cli(["hw-report", "model=hairnet_cifar", "hardware=host", "-f", "json", "-o", str(out)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert "fitted per kind" in data["target"]["mode"] and data["totals"]["latency_s"] > 0
    assert all(row["total_time_s"] > 0 for row in data["layers"])
    assert data["target"]["kind_rates"]["dwconv"] > 0 and data["target"]["bus_bandwidth"] > 0


def test_fresh_maps_cost_their_page_faults_from_the_threshold_on() -> None:
    """Outputs the allocator maps fresh (32 MiB and more) pay the probe's fault cost; in-place ReLUs never."""
    big = hostfit.dims("bn", 8, (32, 224, 224), (32, 224, 224))  # 51 MB at batch 8
    small = hostfit.dims("bn", 1, (32, 224, 224), (32, 224, 224))
    fresh = (float(calibrate.FRESH_MAP_BYTES), 1e-9)
    assert hostfit.fresh_map_s("bn", big, fresh) == pytest.approx(4 * big["out"] * 1e-9)
    assert hostfit.fresh_map_s("bn", small, fresh) == 0.0
    assert hostfit.fresh_map_s("relu", big, fresh) == 0.0 and hostfit.fresh_map_s("bn", big, None) == 0.0
    fit = {"bn": {"features": ["one"], "coef": [1e-5]}}
    assert hostfit.predict_parts(fit, "bn", big, CACHES, fresh) == pytest.approx((4 * big["out"] * 1e-9, 1e-5))


def test_weights_too_big_to_stay_cached_take_at_least_their_dram_streaming_time() -> None:
    """A model whose weights exceed the last-level cache streams each layer's weights from DRAM on
    every pass; a model whose weights fit does not pay that floor."""
    fit = {kind: {"features": list(feats), "coef": [1e-6] + [1e-12] * (len(feats) - 1)}
           for kind, feats in hostfit.FEATURES.items()}
    dram = 10e9
    timer = hostfit.HostTime(fit, CACHES, None, dram)
    llc = max(CACHES.values())
    big = nn.Sequential(nn.Linear(2048, int(llc // 4 // 2048) + 512), nn.ReLU())  # weights just past the LLC
    small = nn.Sequential(nn.Linear(256, 256), nn.ReLU())
    for model, in_features, floored in ((big, 2048, True), (small, 256, False)):
        rows = hostfit.mark_model_weights(hostfit.mark_previous(extract_layers(model, (in_features,))))
        dense = next(r for r in rows if r.kind == "dense")
        fitted = hostfit.predict_parts(fit, "dense", hostfit.layer_dims(dense, 1), CACHES)
        assert fitted is not None
        transfer, compute = timer(dense, 1, 0.0, 0.0)
        if floored:
            assert transfer + compute == pytest.approx(4 * dense.params / dram)
            assert 4 * dense.params / dram > sum(fitted)
        else:
            assert (transfer, compute) == pytest.approx(fitted)
