"""The cost model: extraction from real models, the paper's appendix, corrected counting, options."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hairlab.costmodel.compare import load_reference, matches_printed, mismatches, total_matches  # noqa: E402
from hairlab.costmodel.engine import estimate  # noqa: E402
from hairlab.costmodel.layers import extract_layers  # noqa: E402
from hairlab.errors import HairlabError  # noqa: E402
from hairlab.plugin_manager import registry  # noqa: E402


def _cbr(i: int, o: int, k: int = 3, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(i, o, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(o), nn.ReLU()]


def _tiny() -> nn.Module:
    """Standard, depthwise and pointwise convs, BN, ReLU, max pool, GAP, dense."""
    return nn.Sequential(
        *_cbr(3, 8), nn.MaxPool2d(2),
        *_cbr(8, 8, 3, groups=8), *_cbr(8, 16, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 10),
    )


@pytest.fixture(scope="module")
def hairnet_imagenet() -> nn.Module:
    from hairlab.hydra_app import compose
    from hairlab.models import build_model
    from hairlab.plugin_manager import get_host

    return build_model(compose(["model=hairnet_imagenet"]).model, get_host())


def test_extraction_classifies_layers_with_real_sizes() -> None:
    layers = extract_layers(_tiny(), (3, 16, 16))
    kinds = [layer.kind for layer in layers]
    assert kinds == ["conv", "bn", "relu", "maxpool", "dwconv", "bn", "relu", "pwconv", "bn", "relu", "gap",
                     "dense"]
    conv, dw, pw, dense = layers[0], layers[4], layers[7], layers[-1]
    assert (conv.in_elems, conv.out_elems, conv.params) == (3 * 256, 8 * 256, 3 * 9 * 8)
    assert conv.macs == 8 * 256 * 27
    assert (dw.in_elems, dw.params, dw.macs) == (8 * 64, 72, 8 * 64 * 9)
    assert (pw.out_elems, pw.params, pw.macs) == (16 * 64, 128, 16 * 64 * 8)
    assert (dense.in_elems, dense.out_elems, dense.params, dense.macs) == (16, 10, 170, 160)


def test_third_party_and_functional_blocks_are_counted() -> None:
    class Odd(nn.Module):
        """A leaf the engine has never heard of, plus functional ops in a non-leaf."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(x)

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.odd = Odd()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.relu(self.odd(self.conv(x)) + x)

    model = nn.Sequential(nn.Conv2d(3, 4, 1), Residual())
    layers = extract_layers(model, (3, 8, 8))
    assert [layer.kind for layer in layers] == ["pwconv", "conv", "other", "add", "relu"]
    other, add = layers[2], layers[3]
    assert other.attrs["module"] == "Odd" and other.in_elems == other.out_elems == 256
    assert add.in_elems == 512 and add.out_elems == 256
    assert model.training  # training mode restored


def test_faithful_mode_reproduces_every_appendix_row(hairnet_imagenet: nn.Module) -> None:
    target = registry("hardware").create("paper2012", mode="faithful")
    report = estimate(extract_layers(hairnet_imagenet, (3, 224, 224)), target)
    reference = load_reference(target.reference.table)
    assert len(reference) == 66
    assert mismatches(report, reference) == []
    assert total_matches(report, "0.177")
    assert report.totals["params"] == sum(p.numel() for p in hairnet_imagenet.parameters())


def test_faithful_check_would_catch_a_wrong_row(hairnet_imagenet: nn.Module) -> None:
    target = registry("hardware").create("paper2012", mode="faithful", generic_flops=10e9)
    report = estimate(extract_layers(hairnet_imagenet, (3, 224, 224)), target)
    problems = mismatches(report, load_reference(target.reference.table))
    assert any(p.startswith("row 2 compute_time_s") for p in problems)
    assert not total_matches(report, "0.177")


def test_printed_precision() -> None:
    assert matches_printed(0.0064259, "0.006426") and not matches_printed(0.0064266, "0.006426")
    assert matches_printed(8.6704e-05, "8.67E-05") and not matches_printed(8.76e-05, "8.67E-05")
    assert matches_printed(231211008, "2.31E+08") and not matches_printed(7225344, "2.31E+08")
    assert matches_printed(86704128, "86704128") and not matches_printed(86704129, "86704128")


def test_corrected_mode_counts_depthwise_and_host_rate_right(hairnet_imagenet: nn.Module) -> None:
    layers = extract_layers(hairnet_imagenet, (3, 224, 224))
    faithful = estimate(layers, registry("hardware").create("paper2012", mode="faithful"))
    corrected = estimate(layers, registry("hardware").create("paper2012", mode="corrected"))
    dw_f = next(r for r in faithful.rows if r.kind == "dwconv")
    dw_c = next(r for r in corrected.rows if r.kind == "dwconv")
    assert dw_f.ops == 2 * 112 * 112 * 32 * 32 * 9 and dw_c.ops == 2 * 112 * 112 * 32 * 9
    assert len(corrected.rows) == 66 - 5  # no duplicated pools, no pool before GAP
    bn = next(r for r in corrected.rows if r.kind == "bn_relu")
    assert bn.ops == 3 * 224 * 224 * 32 and bn.compute_time_s == pytest.approx(bn.ops / 10e9)
    # Working-set locality: a layer's internal input and output fit together.
    for r in corrected.rows:
        resident = (r.in_map_MB if r.in_map_loc == "internal" else 0) + (
            r.out_map_MB if r.out_map_loc == "internal" else 0)
        assert resident <= 1.0 + 1e-12
    # The input image crosses the bus once.
    assert corrected.rows[0].in_map_loc == "external"
    assert corrected.totals["params"] == faithful.totals["params"]
    assert 0.05 < corrected.totals["latency_s"] < faithful.totals["latency_s"]


def test_options_batch_overlap_bytes_input_size() -> None:
    layers = extract_layers(_tiny(), (3, 64, 64))
    hw = registry("hardware")
    base = estimate(layers, hw.create("paper2012", mode="corrected"))
    batched = estimate(layers, hw.create("paper2012", mode="corrected", batch_size=4))
    assert batched.totals["flops"] == 4 * base.totals["flops"] and batched.totals["macs"] == 4 * base.totals["macs"]
    assert batched.rows[0].param_MB == base.rows[0].param_MB  # weights loaded once per batch
    overlapped = estimate(layers, hw.create("paper2012", mode="corrected", overlap=True))
    for r in overlapped.rows:
        assert r.total_time_s == pytest.approx(max(r.transfer_time_s, r.compute_time_s))
    assert overlapped.target.map_capacity == 0.5e6
    half = estimate(layers, hw.create("paper2012", mode="corrected", bytes_per_element=2))
    assert half.rows[0].in_map_MB == pytest.approx(base.rows[0].in_map_MB / 2)
    target = hw.create("paper2012", input_size=[3, 32, 32])
    assert target.input_size == (3, 32, 32)
    assert hw.create("paper2012", input_size=96).input_size == (3, 96, 96)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"mode": "fast"}, "hardware.mode='fast'"),
        ({"bus_bandwidth": -1}, "hardware.bus_bandwidth=-1.0: expected a number > 0 (hardware 'paper2012'"),
        ({"batch_size": 0}, "hardware.batch_size=0: expected an integer >= 1"),
        ({"bus_bandwith": 1e9}, "hardware.bus_bandwith is not an option of hardware 'paper2012'"),
        ({"input_size": [1, 2, 3, 4]}, "hardware.input_size"),
        ({"overlap": "sometimes"}, "hardware.overlap"),
    ],
)
def test_bad_options_give_one_line_errors(options: dict, fragment: str) -> None:
    with pytest.raises(HairlabError) as err:
        registry("hardware").create("paper2012", **options)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_model_that_cannot_run_on_the_input_size() -> None:
    with pytest.raises(HairlabError, match="cannot run on input"):
        extract_layers(nn.Sequential(nn.Conv2d(3, 4, 5), nn.Conv2d(4, 4, 5)), (3, 4, 4))


def test_every_shipped_target_config_builds() -> None:
    from hairlab.costmodel.api import target_defaults, target_from_config

    layers = extract_layers(_tiny(), (3, 32, 32))
    for name in ("paper2012", "h100_sxm"):
        target = target_from_config(target_defaults(name))
        assert target.name == name
        report = estimate(layers, target)
        assert report.totals["latency_s"] > 0
    h100 = target_from_config(target_defaults("h100_sxm"))
    assert h100.overlap and h100.bytes_per_element == 2 and h100.map_capacity == 25e6


def test_measure_matches_rows_to_calls_of_shared_modules() -> None:
    from hairlab.costmodel.measure import attach, measure_model

    class Shared(nn.Module):
        """One ReLU module called twice, as residual blocks often do."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv2(self.relu(self.conv1(x))))

    model = Shared()
    target = registry("hardware").create("paper2012", mode="corrected")
    report = estimate(extract_layers(model, (3, 16, 16)), target)
    measurement = measure_model(model, (3, 16, 16), repeats=2, warmup=1, threads=1)
    assert len(measurement.per_module_s["relu"]) == 2
    measured = attach(report, measurement)
    assert [r.kind for r in report.rows] == ["conv", "relu", "conv", "relu"]
    assert all(m is not None and m > 0 for m in measured)
    assert report.as_dict()["measurement"]["clock"] == "thread CPU time"


def test_flops_and_macs_are_separate_integer_counts() -> None:
    """Issue 12's units: FLOPs (2 per MAC + element-wise ops) and MACs (conv/dense) apart, as ints."""
    import csv
    import io
    import json

    from hairlab.costmodel import render

    layers = extract_layers(_tiny(), (3, 16, 16))
    report = estimate(layers, registry("hardware").create("paper2012", mode="corrected", batch_size=2))
    conv, bn = report.rows[0], report.rows[1]
    assert (conv.kind, conv.macs, conv.flops) == ("conv", 2 * 8 * 256 * 27, 2 * 2 * 8 * 256 * 27)
    assert bn.kind == "bn_relu" and bn.macs == 0 and bn.flops == 2 * 3 * 8 * 256  # BN 2 + ReLU 1 per element
    dense = next(r for r in report.rows if r.kind == "dense")
    assert dense.flops == 2 * (2 * 160 + 10)  # the bias adds one op per output
    assert report.totals["macs"] == 2 * sum(layer.macs for layer in layers)
    data = json.loads(render.to_json(report))
    for key in ("params", "flops", "macs", "rows", "batch_size", "memory_bound_rows"):
        assert type(data["totals"][key]) is int, key
    assert all(type(row[k]) is int for row in data["layers"] for k in ("flops", "macs", "params"))
    assert "ops" not in data["totals"] and "ops" not in data["layers"][0]
    assert data["assumptions"] == [*report.target.assumptions(), data["assumptions"][-1]]
    assert data["assumptions"][-1].startswith("units: FLOPs")
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report))))
    assert rows[0]["flops"] == str(conv.flops) and rows[0]["macs"] == str(conv.macs) and rows[0]["params"] == "216"
    md = render.to_markdown(report)
    assert "| FLOPs | MACs |" in md and "mode: corrected" in md
    assert f"FLOPs {report.totals['flops']:,}, MACs {report.totals['macs']:,}" in md


def test_table_names_the_units_and_the_assumptions() -> None:
    from rich.console import Console

    from hairlab.costmodel import render

    report = estimate(extract_layers(_tiny(), (3, 16, 16)), registry("hardware").create("paper2012"))
    console = Console(record=True, width=300)
    render.print_table(report, console)
    text = console.export_text()
    assert "FLOPs" in text and "MACs" in text and "assumes: mode: corrected" in text
    assert "units: FLOPs = the target's operation count" in text


def test_bus_traffic_counts_the_bytes_placed_outside_whatever_times_them() -> None:
    """``bus_MB`` is the bytes of externally placed maps and parameters; a target's own time model
    (``Target.layer_time``, as the fitted host has) changes times, never the bytes."""
    layers = extract_layers(_tiny(), (3, 32, 32))
    target = registry("hardware").create("paper2012", mode="corrected")
    plain = estimate(layers, target)
    timed = estimate(layers, target.with_options(layer_time=lambda layer, b, t, c: (t / 7, c * 3)))
    placed = sum((r.in_map_MB if r.in_map_loc == "external" else 0.0)
                 + (r.out_map_MB if r.out_map_loc == "external" else 0.0) + r.param_MB for r in plain.rows)
    assert plain.totals["bus_MB"] == pytest.approx(placed) == pytest.approx(timed.totals["bus_MB"])
    assert timed.totals["transfer_s"] == pytest.approx(plain.totals["transfer_s"] / 7)
