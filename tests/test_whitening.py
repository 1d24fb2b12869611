"""The ``whiten`` block and the ``init_from_batch`` hook: fitted whitening, frozen filters, builder, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hairlab_plugins.hairnet.whitening_layer import PatchWhitening
from omegaconf import OmegaConf
from test_training import killed_after_first_checkpoint, run, untimed
from torch import nn

from hairlab.errors import HairlabError
from hairlab.models.builder import build_model
from hairlab.plugin_manager import get_host
from hairlab.training.batch_init import init_from_first_batch


def _correlated(n: int = 48, size: int = 8) -> torch.Tensor:
    """Images whose channels and neighbouring pixels are strongly correlated (as photographs are)."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(n, 1, size + 1, size + 1, generator=g)
    smooth = (base[..., :-1, :-1] + base[..., 1:, :-1] + base[..., :-1, 1:] + base[..., 1:, 1:]) / 4
    mix = torch.tensor([[1.0], [0.8], [0.6]]).view(1, 3, 1, 1)
    return 3.0 * smooth * mix + 0.1 * torch.randn(n, 3, size, size, generator=g) + 0.5


def _outputs(block: PatchWhitening, x: torch.Tensor) -> torch.Tensor:
    """Pre-activation outputs as rows (one per position)."""
    y = block.conv(x)
    return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).double()


def test_whitened_patches_have_identity_covariance_on_the_fitted_batch() -> None:
    x = _correlated()
    block = PatchWhitening(3, 24, eps=1e-9)
    raw = _outputs(block, x)
    block.init_from_batch(x)
    rows = _outputs(block, x)
    pos, neg = rows[:, :12], rows[:, 12:]
    assert torch.allclose(neg, -pos, atol=1e-5)  # the negative copies
    assert torch.allclose(pos.mean(0), torch.zeros(12, dtype=torch.float64), atol=1e-4)
    cov = torch.cov(pos.T)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=2e-3), cov.diagonal()
    assert not torch.allclose(torch.cov(raw[:, :12].T), torch.eye(12, dtype=torch.float64), atol=0.1)


def test_fewer_components_keep_the_leading_ones_and_eps_bounds_the_gain() -> None:
    x = _correlated()
    block = PatchWhitening(3, 4, negative=False, eps=1e-9)
    block.init_from_batch(x)
    assert torch.allclose(torch.cov(_outputs(block, x).T), torch.eye(4, dtype=torch.float64), atol=2e-3)
    full = PatchWhitening(3, 12, negative=False, eps=1e-9)
    full.init_from_batch(x)
    assert torch.allclose(full.conv.weight[:4], block.conv.weight, atol=1e-5)  # the largest eigenvalues first
    damped = PatchWhitening(3, 12, negative=False, eps=10.0)
    damped.init_from_batch(x)
    assert torch.cov(_outputs(damped, x).T).diagonal().max() < 1.0  # var = value / (value + eps)


def test_weights_are_frozen_when_asked_and_the_bias_trains() -> None:
    frozen, free = PatchWhitening(3, 24), PatchWhitening(3, 24, frozen=False, activation="gelu")
    assert not frozen.conv.weight.requires_grad and frozen.conv.bias.requires_grad
    assert free.conv.weight.requires_grad and isinstance(free.gelu, nn.GELU)
    assert [n for n, _ in PatchWhitening(3, 24, activation="none").named_children()] == ["conv"]


@pytest.mark.parametrize("width", [25, 26, 0])
def test_a_width_the_patches_cannot_fill_is_refused(width: int) -> None:
    with pytest.raises(ValueError, match="at most 24"):
        PatchWhitening(3, width)


MODEL = {"name": "whitened", "input_shape": [3, 8, 8], "num_classes": 4, "downsample": "max_pool",
         "block_defaults": {"kernel_size": 3},
         "stages": [{"block": "whiten", "width": 24, "downsample": False},
                    {"block": "conv_bn_relu", "width": 8}, {"block": "dw_separable", "width": "num_classes"}],
         "head": {"name": "gap"}}


def test_the_block_builds_through_the_model_builder_from_a_config() -> None:
    model = build_model(OmegaConf.create(MODEL), get_host())
    stems = [m for m in model.modules() if isinstance(m, PatchWhitening)]
    assert len(stems) == 1 and stems[0].conv.kernel_size == (2, 2)  # block_defaults' kernel_size is not its key
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    bad = OmegaConf.create({**MODEL, "stages": [{"block": "whiten", "width": 30}, *MODEL["stages"][1:]]})
    with pytest.raises(HairlabError, match="at most 24") as err:
        build_model(bad, get_host())
    assert "\n" not in str(err.value)
    with pytest.raises(HairlabError, match="eps"):
        build_model(OmegaConf.create({**MODEL, "stages": [{"block": "whiten", "width": 24, "eps": 0},
                                                          *MODEL["stages"][1:]]}), get_host())


def test_the_cost_model_costs_the_stem_as_the_convolution_it_is() -> None:
    from hairlab.costmodel.api import latency_metrics
    from hairlab.costmodel.layers import extract_layers

    model = build_model(OmegaConf.create(MODEL), get_host())
    stem = extract_layers(model, (3, 8, 8))[0]
    assert (stem.kind, stem.attrs["kernel"], stem.out_shape) == ("conv", (2, 2), (24, 7, 7))
    assert stem.macs == 24 * 7 * 7 * 3 * 2 * 2 and stem.params == 24 * 12 + 24
    metrics = latency_metrics(model, (3, 8, 8), ["paper2012"], get_host())
    assert metrics["hw/paper2012/latency_s"] > 0 and metrics["hw/paper2012/macs"] > stem.macs


# -- the engine's hook --------------------------------------------------------------------------
class _Recorder(nn.Module):
    """Doubles its input; records what init_from_batch was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def init_from_batch(self, x: torch.Tensor) -> None:
        self.seen.append(x.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def test_each_module_gets_its_own_input_once_and_the_generator_is_untouched() -> None:
    first, second = _Recorder(), _Recorder()
    after = nn.Linear(3, 3)
    model = nn.Sequential(first, nn.Identity(), second, after)
    calls: list[int] = []
    forwards: list[int] = []
    after.register_forward_pre_hook(lambda m, a: forwards.append(1))
    batch = torch.arange(6.0).view(2, 3)

    def batches() -> Any:
        calls.append(1)
        torch.rand(4, generator=g)  # draws, as a real epoch does
        return iter([(batch, torch.zeros(2)), (batch + 1, torch.zeros(2))])

    g = torch.Generator().manual_seed(9)
    before = g.get_state()
    model.train()
    assert init_from_first_batch(model, batches, g) == 2
    assert torch.equal(g.get_state(), before) and calls == [1] and model.training
    assert torch.equal(first.seen[0], batch) and torch.equal(second.seen[0], 2 * batch)
    assert forwards == []  # the pass stopped after the last hooked module
    plain = nn.Sequential(nn.Linear(3, 3))
    assert init_from_first_batch(plain, lambda: pytest.fail("a model without hooks draws no batch"), g) == 0


def _cfg(tmp: Path, **trainer: Any) -> Any:
    data = {"name": "synthetic", "num_classes": 4, "image_size": 8, "num_train": 64, "num_test": 16,
            "crop_padding": 1, "hflip": True}
    return OmegaConf.create({"task": "train", "seed": 3, "hw_targets": [], "model": MODEL, "dataset": data,
                             "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4},
                             "trainer": {"epochs": 3, "batch_size": 16, "progress": False,
                                         "checkpoint_dir": str(tmp / "ckpt"), **trainer}})


def _run(cfg: Any, directory: Path) -> list[dict]:
    return untimed(run(cfg, directory)[1])


def test_training_fits_once_keeps_frozen_filters_and_a_resume_does_not_refit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fitted: list[torch.Tensor] = []
    real = PatchWhitening.init_from_batch

    def spy(self: PatchWhitening, x: torch.Tensor) -> None:
        assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32  # the normalised first batch
        real(self, x)
        fitted.append(self.conv.weight.detach().clone())

    monkeypatch.setattr(PatchWhitening, "init_from_batch", spy)
    full = _run(_cfg(tmp_path / "full"), tmp_path / "full")
    assert len(fitted) == 1
    state = torch.load(tmp_path / "full" / "ckpt" / "last.pt", weights_only=True)["model"]
    weight = next(v for k, v in state.items() if k.endswith("block1.conv.weight") and v.shape[-1] == 2)
    assert torch.equal(weight, fitted[0])  # frozen through SGD with weight decay, three epochs

    with killed_after_first_checkpoint(monkeypatch):
        _run(_cfg(tmp_path / "killed"), tmp_path / "killed")
    assert len(fitted) == 2
    resumed = _run(_cfg(tmp_path / "resumed", resume=str(tmp_path / "killed" / "ckpt")), tmp_path / "resumed")
    assert len(fitted) == 2  # not fitted again: the weights came from the checkpoint
    assert resumed == full
