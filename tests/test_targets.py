"""Targets' fusion, folding and precision options, and the roofline's row labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hairlab.costmodel.conventions import fold_bn  # noqa: E402
from hairlab.costmodel.engine import Report, estimate, row_tag, slowest_rows  # noqa: E402
from hairlab.costmodel.layers import extract_layers  # noqa: E402
from hairlab.costmodel.target import Conventions, Target, common_options  # noqa: E402
from hairlab.errors import HairlabError  # noqa: E402
from hairlab.plugin_manager import get_host  # noqa: E402

SHAPE = (3, 8, 8)


def target(**options: Any) -> Target:
    """A built-in target through the one build path (schema check, then the plugin's factory)."""
    built: Target = get_host().build("hardware", {"name": "paper2012", **options}, where="hardware")
    return built


def chain(conv1_bias: bool = False) -> nn.Module:
    """conv(3->8) BN ReLU, then a 1x1 conv(8->4, bias) ReLU, on 8x8."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=conv1_bias), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 1), nn.ReLU())


def report(model: nn.Module, **options: Any) -> Report:
    # internal_memory of one byte: every map lives in external memory, so every row moves its
    # input, its output and its parameters over the bus, and bytes can be counted by hand.
    return estimate(extract_layers(model, SHAPE), target(internal_memory=1.0, **options), input_shape=SHAPE)


def bus_bytes(rep: Report) -> float:
    return sum(r.transfer_time_s for r in rep.rows) * rep.target.bus_bandwidth


# elements per image: input 3*8*8, conv1 out 8*8*8, conv2 out 4*8*8; params: conv1 3*8*9, BN 2*8,
# conv2 8*4 + 4
IN, MID, OUT = 192, 512, 256
P1, PBN, P2 = 216, 16, 36
MACS1 = MID * 27


def test_defaults_change_nothing_and_count_by_hand() -> None:
    rep = report(chain())
    assert [r.kind for r in rep.rows] == ["conv", "bn_relu", "pwconv", "relu"]
    by_hand = 4 * ((IN + MID) + P1 + (MID + MID) + PBN + (MID + OUT) + P2 + (OUT + OUT))
    assert bus_bytes(rep) == pytest.approx(by_hand)
    t = target()
    assert not t.conventions.fuse_conv_bn_relu and not t.conventions.fold_bn
    assert not target(mode="faithful").conventions.fold_bn


def test_fuse_conv_bn_relu_merges_rows_and_never_writes_the_intermediate_maps() -> None:
    rep = report(chain(), fuse_conv_bn_relu=True)
    assert [r.kind for r in rep.rows] == ["conv", "pwconv"]
    first, second = rep.rows
    # One pass: the conv's input in, the ReLU's output out; the conv's and the BN's maps never move.
    assert (first.in_map_MB, first.out_map_MB) == (IN * 4 / 1e6, MID * 4 / 1e6)
    assert first.params == P1 + PBN and second.params == P2
    assert bus_bytes(rep) == pytest.approx(4 * ((IN + MID) + P1 + PBN + (MID + OUT) + P2))
    # The BN's and the ReLU's work stays counted, now on the conv's unit (corrected: BN 2, ReLU 1 per element).
    assert first.flops == 2 * MACS1 + 3 * MID and first.unit == "matrix"
    assert first.layer_name == "conv2D+BN_RELU" and first.module == "0+1+2"
    assert "conv+BN+ReLU one row" in " ".join(rep.target.assumptions())


def test_fold_bn_gives_the_conv_a_bias_and_removes_the_bn_row() -> None:
    rep = report(chain(), fold_bn=True)
    assert [r.kind for r in rep.rows] == ["conv", "relu", "pwconv", "relu"]
    conv = rep.rows[0]
    assert conv.params == P1 + 8  # one bias per output channel replaces BN's gamma and beta
    assert conv.flops == 2 * MACS1 + MID  # + the bias add
    assert bus_bytes(rep) == pytest.approx(4 * ((IN + MID) + P1 + 8 + (MID + MID) + (MID + OUT) + P2 + (OUT + OUT)))
    # A conv that already has a bias keeps it: the BN's shift joins it, no parameter is added.
    assert report(chain(conv1_bias=True), fold_bn=True).rows[0].params == P1 + 8
    # Folded, then fused: conv+ReLU, its flops the bias and the ReLU.
    both = report(chain(), fold_bn=True, fuse_conv_bn_relu=True)
    assert [r.kind for r in both.rows] == ["conv", "pwconv"]
    assert both.rows[0].flops == 2 * MACS1 + MID + MID and both.rows[0].params == P1 + 8
    assert both.rows[0].layer_name == "conv2D+RELU"
    assert "BN after a conv folded" in " ".join(both.target.assumptions())


def test_fold_is_algorithm_2_step_10() -> None:
    """The folded conv computes what conv then inference BN computes (what makes dropping the row right)."""
    model = chain().eval()
    conv, bn = model[0], model[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        folded = nn.Conv2d(3, 8, 3, padding=1)
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_(bn.bias - scale * bn.running_mean)
        x = torch.randn(2, *SHAPE)
        assert torch.allclose(folded(x), bn(conv(x)), atol=1e-5)
    rows = fold_bn(extract_layers(model, SHAPE))
    assert rows[0].params == sum(p.numel() for p in folded.parameters())


def test_dtype_sets_bytes_and_h100_rates_per_type() -> None:
    from hairlab_plugins.hardware import H100SXMOptions

    host = get_host()
    figures = {"fp32": (67e12, 4), "bf16": (989e12, 2), "fp16": (989e12, 2), "int8": (1979e12, 1)}
    for dtype, (matrix, size) in figures.items():
        h100: Target = host.build("hardware", {"name": "h100_sxm", "dtype": dtype}, where="hardware")
        assert h100.dtype == dtype and h100.bytes_per_element == size
        assert h100.rate("conv") == h100.rate("dense") == matrix == H100SXMOptions.DATASHEET_RATES[dtype][0]
        assert h100.rate("bn") == 67e12
        assert f"data type: {dtype}, {size} byte" in h100.assumptions()[1]
    default: Target = host.build("hardware", {"name": "h100_sxm"}, where="hardware")
    assert (default.dtype, default.bytes_per_element, default.matrix_flops) == ("bf16", 2, 989e12)
    # Given bytes win over the type's size; a given rate replaces the type's figure.
    mixed: Target = host.build("hardware", {"name": "h100_sxm", "dtype": "int8", "bytes_per_element": 2,
                                            "matrix_flops": 5e14}, where="hardware")
    assert (mixed.bytes_per_element, mixed.rate("conv")) == (2, 5e14)
    # A copy at another type brings that type's rates and size.
    assert default.with_options(dtype="int8").rate("pwconv") == 1979e12
    assert default.with_options(dtype="int8").bytes_per_element == 1


def test_dtype_halves_the_bytes_on_paper2012() -> None:
    fp32, bf16 = report(chain()), report(chain(), dtype="bf16")
    assert bf16.target.rate("conv") == fp32.target.rate("conv")  # the paper states one rate per unit
    assert bus_bytes(bf16) == pytest.approx(bus_bytes(fp32) / 2)
    assert [r.in_map_MB * 2 for r in bf16.rows] == pytest.approx([r.in_map_MB for r in fp32.rows])


def test_a_type_without_a_rate_is_one_line() -> None:
    with pytest.raises(HairlabError, match=r"hardware\.dtype=int8: target 'npu' has no int8 rate; choose one of"):
        Target(name="npu", description="", internal_memory=1e6, bus_bandwidth=1e9, matrix_flops=1e12,
               generic_flops=1e9, dtype="int8", dtype_rates={"fp32": (1e12, 1e9), "bf16": (2e12, 1e9)})
    with pytest.raises(HairlabError, match=r"hardware\.fold_bn=true: this target has no counting conventions"):
        common_options({"fold_bn": True})
    assert common_options({"fold_bn": True}, Conventions())["conventions"].fold_bn


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["hardware=h100_sxm", "hardware.dtype=fp64"],
         "hardware.dtype='fp64': expected 'fp32' | 'bf16' | 'fp16' | 'int8' (hardware 'h100_sxm'"),
        (["hardware=host", "hardware.dtype=bf16"], "hardware.dtype=bf16: the host calibration measures fp32"),
        (["hardware.fold_bn=maybe"], "hardware.fold_bn='maybe'"),
    ],
)
def test_bad_precision_options_through_the_cli(args: list[str], fragment: str, tmp_path: Path) -> None:
    res = run_cli(["hw-report", "model=hairnet_cifar", *args], cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert fragment in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_roofline_tags_the_summarys_slowest_rows_without_overlap(tmp_path: Path) -> None:
    from hairlab.commands.hw_report import build_report
    from hairlab.costmodel.roofline import plot_roofline, roofline_figure

    rep, _, _ = build_report(["model=hairnet_imagenet", "hardware=paper2012"], get_host())
    fig = roofline_figure(rep, labels=5)
    ax = fig.axes[0]
    tags = [line for t in ax.texts for line in t.get_text().splitlines()]
    slow = slowest_rows(rep.rows, 5)
    summary = next(line for line in rep.summary if line.startswith("slowest rows: "))
    for row in slow:
        assert row_tag(row) in tags  # on the chart, as the text names it
    for row in slow[:3]:
        assert row_tag(row) in summary
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts if t.get_text().startswith("#")]
    assert len(boxes) >= 3
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    png = plot_roofline(rep, tmp_path / "roof.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_report_states_type_and_fusion(tmp_path: Path) -> None:
    import json

    from hairlab.commands.hw_report import hw_report

    out = tmp_path / "r.json"
    hw_report(["model=hairnet_cifar", "hardware=h100_sxm", "hardware.dtype=int8", "hardware.fold_bn=true",
               "hardware.fuse_conv_bn_relu=true"], get_host(), fmt="json", output=out)
    data = json.loads(out.read_text())
    assert data["target"]["dtype"] == "int8" and data["target"]["bytes_per_element"] == 1
    assert data["target"]["matrix_flops"] == 1979e12
    assert data["target"]["conventions"]["fold_bn"] and data["target"]["conventions"]["fuse_conv_bn_relu"]
    said = "\n".join(data["assumptions"])
    assert "data type: int8, 1 byte per element" in said and "BN after a conv folded" in said
    assert "conv+ReLU one row" in said
    assert not [row for row in data["layers"] if row["kind"] in ("bn", "bn_relu")]
