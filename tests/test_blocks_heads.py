"""The hairnet plugin's blocks and heads: shapes, parameter counts, the BN switch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hairlab.errors import HairlabError
from hairlab.models import count_parameters
from hairlab.plugin_manager import registry


def block(name: str, *args, **kwargs):
    return registry("blocks").create(name, *args, **kwargs)


def head(name: str, *args, **kwargs):
    return registry("heads").create(name, *args, **kwargs)


def test_entries_registered_with_schemas() -> None:
    for kind, names in {"blocks": ["conv_bn_relu", "dw_separable", "conv_relu", "inverted_residual"],
                        "heads": ["gap", "dense", "mlp"]}.items():
        for name in names:
            entry = registry(kind).get(name)
            assert entry.plugin == "hairnet"
            assert entry.schema is not None


@pytest.mark.parametrize("stride,out_hw", [(1, 16), (2, 8)])
def test_conv_bn_relu_shape_and_params(stride: int, out_hw: int) -> None:
    m = block("conv_bn_relu", 3, 32, stride=stride)
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 32, out_hw, out_hw)
    # Table 1's stem: 3x3x3x32 weights + BN gamma/beta, no conv bias = 928
    assert count_parameters(m) == 3 * 3 * 3 * 32 + 2 * 32 == 928
    assert m.conv.bias is None and isinstance(m.bn, nn.BatchNorm2d)


def test_conv_bn_relu_without_bn_has_bias_and_no_norm() -> None:
    m = block("conv_bn_relu", 3, 32, batch_norm=False)
    assert m.conv.bias is not None
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert count_parameters(m) == 3 * 3 * 3 * 32 + 32


def test_dw_separable_matches_figure2() -> None:
    m = block("dw_separable", 32, 64)
    kinds = [type(x).__name__ for x in m.children()]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU"]
    assert m.dw.groups == 32 and m.dw.kernel_size == (3, 3) and m.pw.kernel_size == (1, 1)
    assert count_parameters(m) == 9 * 32 + 2 * 32 + 32 * 64 + 2 * 64 == 2528
    assert m(torch.randn(2, 32, 8, 8)).shape == (2, 64, 8, 8)


def test_dw_separable_bn_switch_and_stride() -> None:
    m = block("dw_separable", 32, 64, stride=2, batch_norm=False, kernel_size=5)
    assert m.dw.bias is not None and m.pw.bias is not None
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert count_parameters(m) == 25 * 32 + 32 + 32 * 64 + 64
    assert m(torch.randn(1, 32, 8, 8)).shape == (1, 64, 4, 4)


def test_unknown_block_option_names_the_block_and_plugin() -> None:
    with pytest.raises(HairlabError, match=r"block\.dilation is not an option of block 'dw_separable' \(plugin hairnet"):
        block("dw_separable", 8, 8, dilation=2)


def test_conv_relu_is_alexnet_style() -> None:
    m = block("conv_relu", 3, 96, stride=4, kernel_size=11, padding=2)
    assert m(torch.randn(1, 3, 224, 224)).shape == (1, 96, 55, 55)
    assert count_parameters(m) == 11 * 11 * 3 * 96 + 96


def test_gap_head_averages_class_maps() -> None:
    h = head("gap", 10, 10)
    x = torch.randn(4, 10, 3, 3)
    assert torch.allclose(h(x), x.mean(dim=(2, 3)))
    assert count_parameters(h) == 0
    with pytest.raises(HairlabError, match=r"head 'gap' \(plugin hairnet.*\) failed to build: ValueError: .*num_classes"):
        head("gap", 16, 10)


def test_dense_head_adds_one_layer() -> None:
    h = head("dense", 1000, 1000)
    assert count_parameters(h) == 1000 * 1000 + 1000
    assert h(torch.randn(2, 1000, 7, 7)).shape == (2, 1000)


def test_mlp_head_is_alexnets_classifier() -> None:
    h = head("mlp", 256, 1000)
    assert count_parameters(h) == 58_631_144  # the paper's "roughly 58.63 million"
    assert h.eval()(torch.randn(1, 256, 13, 13)).shape == (1, 1000)


def test_inverted_residual_is_mobilenet_v2s_bottleneck() -> None:
    m = block("inverted_residual", 24, 24)
    names = [name for name, _ in m.named_children()]
    assert names == ["expand", "expand_bn", "expand_relu", "dw", "dw_bn", "dw_relu", "project", "project_bn"]
    assert isinstance(m.expand_relu, nn.ReLU6) and isinstance(m.dw_relu, nn.ReLU6)  # the projection is linear
    assert m.dw.groups == 144 and m.dw.kernel_size == (3, 3) and m.project.kernel_size == (1, 1)
    assert count_parameters(m) == 24 * 144 + 2 * 144 + 9 * 144 + 2 * 144 + 144 * 24 + 2 * 24
    x = torch.randn(2, 24, 8, 8)
    assert m.residual and m(x).shape == x.shape
    m.eval()
    with torch.no_grad():  # the input is added back: zeroing the projection's BN leaves the input
        m.project_bn.weight.zero_()
        m.project_bn.bias.zero_()
        assert torch.allclose(m(x), x)


def test_inverted_residual_without_expansion_or_residual() -> None:
    m = block("inverted_residual", 32, 16, expansion=1)
    assert not hasattr(m, "expand") and m.dw.groups == 32 and not m.residual
    strided = block("inverted_residual", 16, 16, stride=2)
    assert not strided.residual and strided(torch.randn(1, 16, 8, 8)).shape == (1, 16, 4, 4)
    with pytest.raises(HairlabError, match=r"expansion=0.0: expected a number > 0"):
        block("inverted_residual", 16, 16, expansion=0)


def test_groups_and_relu6_on_the_plain_conv_blocks() -> None:
    m = block("conv_relu", 96, 256, kernel_size=5, groups=2)
    assert m.conv.groups == 2 and count_parameters(m) == 48 * 256 * 25 + 256  # AlexNet's conv2, one tower each
    g = block("conv_bn_relu", 32, 64, groups=4, activation="relu6")
    assert g.conv.groups == 4 and isinstance(g.relu, nn.ReLU6)
    with pytest.raises(HairlabError, match=r"groups=0: expected an integer >= 1"):
        block("conv_relu", 8, 8, groups=0)
    with pytest.raises(HairlabError, match=r"activation='gelu'"):
        block("conv_bn_relu", 8, 8, activation="gelu")
