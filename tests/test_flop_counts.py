"""hairlab's conv and dense MACs against torch's own counter, for every shipped model config.

``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add of convolutions
and matrix products (bias, BN, activations and pools not counted), so its total / 2 must equal
the MACs hairlab reads from the weight shapes and ``groups`` of the executed layers, and the
``macs`` total of a report on any target.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from hairlab.costmodel.engine import estimate  # noqa: E402
from hairlab.costmodel.layers import extract_layers  # noqa: E402
from hairlab.plugin_manager import get_host, registry  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
MODELS = sorted(p.stem for p in CONF.glob("*.yaml"))
MATMUL_KINDS = ("conv", "dwconv", "pwconv", "dense")


def test_every_zoo_model_is_checked() -> None:
    assert {"hairnet_imagenet", "hairnet_cifar", "alexnet", "alexnet_one_tower", "alexnet_torchvision",
            "mobilenet_v1", "mobilenet_v2"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_conv_and_dense_macs_equal_flop_counter_half(name: str) -> None:
    from hairlab.hydra_app import compose
    from hairlab.models import build_model

    model = build_model(compose([f"model={name}"]).model, get_host()).eval()
    shape = tuple(model.input_shape)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *shape))
    torch_flops = counter.get_total_flops()
    layers = extract_layers(model, shape)
    macs = sum(layer.macs for layer in layers if layer.kind in MATMUL_KINDS)
    assert torch_flops > 0 and torch_flops % 2 == 0
    assert macs == torch_flops // 2, (name, macs, torch_flops)
    assert sum(layer.macs for layer in layers) == macs  # no other kind carries MACs
    report = estimate(layers, registry("hardware").create("paper2012"))
    assert report.totals["macs"] == macs
