"""Config-built models: Table 1, the CIFAR variant, AlexNet, and the builder's options."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from hairlab.errors import HairlabError
from hairlab.models import build_model, count_parameters, model_input_shape, plan_model, stage_parameters
from hairlab.plugin_manager import PluginHost

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
TABLE1 = Path(__file__).resolve().parents[2] / "shared" / "paper" / "table1_architecture.csv"


def load(name: str, **overrides):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def host() -> PluginHost:
    """A plugin host made here, holding only the hairnet plugin: the builder needs nothing else."""
    import hairlab_plugins.hairnet

    made = PluginHost()
    made.register(hairlab_plugins.hairnet, "hairnet", "hairlab-test", "0")
    made.collect()
    return made


@pytest.fixture(scope="module")
def imagenet(host: PluginHost) -> nn.Module:
    return build_model(load("hairnet_imagenet"), host)


def test_hairnet_imagenet_is_table1(imagenet: nn.Module) -> None:
    assert imagenet.input_shape == (3, 224, 224) and imagenet.num_classes == 1000
    assert [type(m).__name__ for m in imagenet.body.children()] == [
        "Sequential", "MaxPool2d"] * 5 + ["Sequential"]
    widths = [list(s.children())[-1] for s in imagenet.body.children() if isinstance(s, nn.Sequential)]
    reps = [len(s) for s in imagenet.body.children() if isinstance(s, nn.Sequential)]
    assert reps == [1, 2, 3, 3, 3, 2]
    assert [w.conv.out_channels if hasattr(w, "conv") else w.pw.out_channels for w in widths] == [
        32, 64, 128, 256, 512, 1000]
    assert count_parameters(imagenet) == 2_431_192  # "2.4M" in the paper
    # input sizes per stage as printed in Table 1
    sizes, x = [], torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        for name, m in imagenet.eval().body.named_children():
            if name.startswith("stage"):
                sizes.append(tuple(x.shape[1:]))
            x = m(x)
    assert sizes == [(3, 224, 224), (32, 112, 112), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    assert tuple(x.shape) == (1, 1000, 7, 7)


def test_stage_totals_against_table1(imagenet: nn.Module) -> None:
    printed = [928, 7456, 44736, 171392, 670464, 1593856]
    if TABLE1.exists():
        rows = csv.DictReader(TABLE1.open())
        assert printed == [int(r["total_parameters_printed"]) for r in rows if r["total_parameters_printed"]]
    real = list(stage_parameters(imagenet).values())[:6]
    assert real[:2] == printed[:2]  # the stem and stage 2 agree exactly
    # stages 3-5: Table 1 counts one BN pair too few per block after the first (docs/models.md)
    assert [r - p for r, p in zip(real[2:5], printed[2:5], strict=True)] == [512, 1024, 2048]
    assert real[5] == 1_532_632


def test_alexnet_and_the_4_percent(host: PluginHost, imagenet: nn.Module) -> None:
    """The paper's "4% of AlexNet" is against the one-tower original-widths network (62M)."""
    alex = build_model(load("alexnet_one_tower"), host)
    assert count_parameters(alex) == 62_378_344
    assert count_parameters(alex.head) == 58_631_144
    ratio = count_parameters(imagenet) / count_parameters(alex)
    assert 0.038 < ratio < 0.040


def test_dense_head_ratio(host: PluginHost, imagenet: nn.Module) -> None:
    dense = build_model(load("hairnet_imagenet", **{"head.name": "dense"}), host)
    assert count_parameters(dense) - count_parameters(imagenet) == 1000 * 1000 + 1000
    assert count_parameters(dense) / count_parameters(imagenet) == pytest.approx(1.412, abs=1e-3)


def test_batch_norm_switch_applies_to_every_block(host: PluginHost) -> None:
    cfg = load("hairnet_imagenet", batch_norm=False)
    model = build_model(cfg, host)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    bn_params = sum(2 * m.num_features for m in build_model(load("hairnet_imagenet"), host).modules()
                    if isinstance(m, nn.BatchNorm2d))
    bias_params = sum(c.out_channels for c in convs)
    assert count_parameters(model) == 2_431_192 - bn_params + bias_params


def test_hairnet_cifar_standalone_and_width_multiplier(host: PluginHost) -> None:
    cfg = load("hairnet_cifar")
    assert model_input_shape(cfg) == (3, 32, 32)
    model = build_model(cfg, host)  # num_classes falls back to 10 without a dataset group
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    half = build_model(load("hairnet_cifar", width_multiplier=0.5), host)
    assert half.body.stage2.block1.pw.out_channels == 32
    assert half.body.stage6.block2.pw.out_channels == 10  # class maps are not scaled
    assert count_parameters(half) < count_parameters(model) / 3


def test_num_classes_and_shape_overrides(host: PluginHost) -> None:
    model = build_model(load("hairnet_cifar"), host, num_classes=7, input_shape=(1, 16, 16))
    assert model(torch.randn(3, 1, 16, 16)).shape == (3, 7)


def test_stride_downsampling_replaces_pools(host: PluginHost) -> None:
    model = build_model(load("hairnet_cifar", downsample="stride"), host)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.body.stage3.block1.dw.stride == (2, 2)
    none = build_model(load("hairnet_cifar", downsample="none"), host)
    assert not any(isinstance(m, nn.MaxPool2d) for m in none.modules())


@pytest.mark.parametrize("key,value,match", [
    ("downsample", "avg", r"model\.downsample='avg': expected 'max_pool' \| 'stride' \| 'none'"),
    ("stages.1.width", -3, r"model\.stages\[1\]\.width=-3: expected a positive integer"),
    ("stages.1.kernel_size", "big", r"model\.stages\[1\]\.kernel_size='big': expected int \(block 'dw_separable' "
                                    r"\(plugin hairnet, hairlab-test 0\)\)"),
    ("stages.1.dilation", 2, r"model\.stages\[1\]\.dilation is not an option of block 'dw_separable'"),
    ("head.name", "nope", r"unknown heads entry 'nope'"),
    ("head.dropout", 0.1, r"model\.head\.dropout is not an option of head 'gap' \(plugin hairnet"),
    ("width_multiplier", 0, r"model\.width_multiplier=0.0: expected a number > 0"),
    ("typo", 1, r"model\.typo is not an option of the model config"),
])
def test_bad_model_configs_are_one_line_errors(host: PluginHost, key: str, value: object, match: str) -> None:
    cfg = load("hairnet_cifar")
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(HairlabError, match=match) as info:
        build_model(cfg, host)
    assert "\n" not in str(info.value)
    with pytest.raises(HairlabError, match=match):  # the check before a job says the same, without torch
        plan_model(cfg, host)


def test_a_model_needs_a_head(host: PluginHost) -> None:
    cfg = load("hairnet_cifar")
    del cfg["head"]
    with pytest.raises(HairlabError, match=r"model\.head is missing: set model\.head\.name=NAME"):
        build_model(cfg, host)


def test_blocks_come_from_the_host_passed_in(host: PluginHost) -> None:
    empty = PluginHost()
    empty.collect()
    with pytest.raises(HairlabError, match="unknown blocks entry 'conv_bn_relu'"):
        build_model(load("hairnet_cifar"), empty)
    assert isinstance(build_model(load("hairnet_cifar"), host), nn.Module)


def test_a_failing_block_factory_names_its_plugin() -> None:
    from hairlab import hookimpl
    from hairlab.registry import Entry

    class Broken:
        @hookimpl
        def hairlab_blocks(self) -> list[Entry]:
            def factory(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Module:
                import numpy_typo_does_not_exist  # noqa: F401

            return [Entry("broken", factory, "fails to build")]

        @hookimpl
        def hairlab_heads(self) -> list[Entry]:
            import hairlab_plugins.hairnet as hn

            return hn.hairlab_heads()

    made = PluginHost()
    made.register(Broken(), "brokenplug", "hairlab-broken", "0.1")
    made.collect()
    cfg = {"input_shape": [3, 8, 8], "num_classes": 2, "stages": [{"block": "broken", "width": 2}],
           "head": {"name": "gap"}}
    with pytest.raises(HairlabError, match=r"^block 'broken' \(plugin brokenplug, hairlab-broken 0.1\) failed to "
                                           r"build: ModuleNotFoundError: No module named 'numpy_typo_does_not_exist'"):
        build_model(cfg, made)


def test_gap_head_needs_class_maps(host: PluginHost) -> None:
    cfg = load("hairnet_cifar")
    cfg.stages[-1].width = 64
    with pytest.raises(HairlabError, match="num_classes"):
        build_model(cfg, host)


def test_plain_dict_config(host: PluginHost) -> None:
    cfg = OmegaConf.to_container(load("hairnet_cifar"), resolve=True)
    cfg2 = copy.deepcopy(cfg)
    assert count_parameters(build_model(cfg, host)) == count_parameters(build_model(cfg2, host)) == 909_562
