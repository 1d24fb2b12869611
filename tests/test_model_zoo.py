"""The model zoo in conf/model/: each count asserted (issue 12).

Parameters are exact; MACs are exact as hairlab counts them (which equals torch's own counter,
tests/test_flop_counts.py) and close to the figure each source publishes. The MobileNetV2
width-multiplier variants are checked against an independent re-derivation of the reference
construction (Sandler et al. 2018's code, as torchvision and TF-slim build it: widths rounded
to multiples of 8, the last 1280-wide layer never shrunk), written out below without hairlab.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hairlab.costmodel.layers import extract_layers  # noqa: E402
from hairlab.errors import HairlabError  # noqa: E402
from hairlab.models import build_model, count_parameters, plan_model  # noqa: E402
from hairlab.plugin_manager import get_host  # noqa: E402


def _build(name: str, *overrides: str, **kwargs: object) -> torch.nn.Module:
    from hairlab.hydra_app import compose

    return build_model(compose([f"model={name}", *overrides]).model, get_host(), **kwargs)  # type: ignore[arg-type]


def _macs(model: torch.nn.Module) -> int:
    return sum(layer.macs for layer in extract_layers(model, tuple(model.input_shape)))


# name: (input, params exact, MACs exact, published MACs, its source)
ZOO = {
    # Krizhevsky et al. 2012, two towers: the "about 724M" (the sum per layer: docs/models.md).
    "alexnet": ((3, 227, 227), 60_965_224, 724_406_816, 724e6),
    # torchvision.models.alexnet: 61,100,840 parameters, "0.71 GFLOPS" in its model table (MACs).
    "alexnet_torchvision": ((3, 224, 224), 61_100_840, 714_188_480, 714e6),
    # The one-tower original widths: the paper's "62 million" (HairNet is 4% of it).
    "alexnet_one_tower": ((3, 224, 224), 62_378_344, 1_135_256_096, None),
    # Howard et al. 2017, Table 1/8: 4.2M parameters, 569M mult-adds.
    "mobilenet_v1": ((3, 224, 224), 4_231_976, 568_740_352, 568.7e6),
    # Sandler et al. 2018: 300M multiply-adds; torchvision's mobilenet_v2: 3,504,872 parameters.
    "mobilenet_v2": ((3, 224, 224), 3_504_872, 300_774_272, 300e6),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_counts(name: str) -> None:
    shape, params, macs, published = ZOO[name]
    model = _build(name)
    assert tuple(model.input_shape) == shape
    assert count_parameters(model) == params
    assert _macs(model) == macs
    if published is not None:
        assert macs == pytest.approx(published, rel=5e-3)


def test_alexnet_towers_are_grouped_convs() -> None:
    convs = [m for m in _build("alexnet").modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]


def _make_divisible(value: float, divisor: int = 8) -> int:
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def mobilenet_v2_counts(alpha: float, resolution: int = 224, classes: int = 1000) -> tuple[int, int]:
    """(parameters, MACs) of the reference MobileNetV2 construction, by arithmetic alone."""
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1)]

    def out_hw(h: int, stride: int) -> int:  # 3x3 kernel, padding 1
        return (h + 2 - 3) // stride + 1

    h = out_hw(resolution, 2)
    c = _make_divisible(32 * alpha)
    params, macs = 27 * c + 2 * c, h * h * 27 * c  # stem conv (no bias) + BN
    for t, width, n, s in table:
        out = _make_divisible(width * alpha)
        for i in range(n):
            hidden = round(c * t)
            if t != 1:
                params += c * hidden + 2 * hidden
                macs += h * h * c * hidden
            h = out_hw(h, s if i == 0 else 1)
            params += 9 * hidden + 2 * hidden
            macs += h * h * 9 * hidden
            params += hidden * out + 2 * out
            macs += h * h * hidden * out
            c = out
    last = _make_divisible(1280 * max(1.0, alpha))
    params += c * last + 2 * last + last * classes + classes
    macs += h * h * c * last + last * classes
    return params, macs


# alpha: (MACs, parameters) published for TF-slim's checkpoints (tensorflow/models,
# research/slim/nets/mobilenet/README.md: 1.4: 582M, 6.06M; 0.75: 209M, 2.61M; 0.5: 97M, 1.95M).
# Its parameter counts are for 1001 classes and run ~1% under the construction's (6.11M at 1.4).
PUBLISHED_V2 = {1.4: (582e6, 6.06e6), 0.75: (209e6, 2.61e6), 0.5: (97e6, 1.95e6)}


def test_reference_formula_gives_the_published_mobilenet_v2() -> None:
    assert mobilenet_v2_counts(1.0) == (3_504_872, 300_774_272)  # torchvision's parameter count


@pytest.mark.parametrize("alpha", sorted(PUBLISHED_V2))
def test_mobilenet_v2_width_multipliers(alpha: float) -> None:
    model = _build("mobilenet_v2", f"model.width_multiplier={alpha}")
    params, macs = mobilenet_v2_counts(alpha)
    assert (count_parameters(model), _macs(model)) == (params, macs)
    pub_macs, pub_params = PUBLISHED_V2[alpha]
    assert macs == pytest.approx(pub_macs, rel=5e-3)
    assert params == pytest.approx(pub_params, rel=2e-2)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert last.out_channels == _make_divisible(1280 * max(1.0, alpha))  # 1280 unless alpha > 1


def test_without_a_divisor_widths_round_plainly() -> None:
    """The option is off by default: existing models keep their counts under a multiplier."""
    model = _build("hairnet_cifar", "model.width_multiplier=0.3")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == round(32 * 0.3) == 10  # not 16
    with_divisor = _build("hairnet_cifar", "model.width_multiplier=0.3", "model.width_divisor=8")
    assert next(m for m in with_divisor.modules() if isinstance(m, torch.nn.Conv2d)).out_channels == 16


def test_mobilenet_v1_width_multiplier_matches_the_paper() -> None:
    """Howard et al. Table 6: 0.5 MobileNet-224, 1.3M parameters and 149M mult-adds."""
    model = _build("mobilenet_v1", "model.width_multiplier=0.5")
    assert count_parameters(model) == pytest.approx(1.3e6, rel=3e-2)
    assert _macs(model) == pytest.approx(149e6, rel=5e-3)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_heads_follow_the_dataset(name: str) -> None:
    """A training run passes its data's classes; the head adapts as for every other model."""
    model = _build(name, num_classes=10)
    out = model.eval()(torch.zeros(2, *model.input_shape))
    assert out.shape == (2, 10)


def test_groups_that_do_not_divide_the_channels_are_one_line_before_any_build() -> None:
    from hairlab.hydra_app import compose

    cfg = compose(["model=alexnet", "model.width_multiplier=0.3"]).model  # 96 * 0.3 = 29 channels
    with pytest.raises(HairlabError) as err:
        plan_model(cfg, get_host())
    assert str(err.value) == ("model.stages[1]: groups=2 does not divide 29 input and 77 output channels; "
                              "choose groups dividing both (or widths divisible by groups)")


def test_mobilenet_v2_residuals_are_costed() -> None:
    """The block's shortcut adds (a functional ``x + y``) are rows of the cost model: 10 of 17 blocks."""
    from collections import Counter

    kinds = Counter(layer.kind for layer in extract_layers(_build("mobilenet_v2"), (3, 224, 224)))
    assert kinds["add"] == 1 + 2 + 3 + 2 + 2  # the repeats after each stage's first block
    assert (kinds["dwconv"], kinds["pwconv"], kinds["conv"], kinds["dense"]) == (17, 34, 1, 1)
    assert kinds["relu"] == 35 and kinds["bn"] == 52  # linear projections: no activation after them
