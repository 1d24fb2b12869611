"""Test-time augmentation modes: each mode's logits are the weighted mean of the model on its views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from hairlab.errors import HairlabError
from hairlab.plugin_manager import get_host
from hairlab.tracking.base import LocalTracker
from hairlab.training import tta
from hairlab.training.config import EngineConfig
from hairlab.training.job import train_job


def _model() -> nn.Module:
    torch.manual_seed(0)  # an asymmetric net: a mirrored or moved input changes its logits
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 5, 3)).eval()


def _x() -> torch.Tensor:
    return torch.randn(5, 3, 6, 5, generator=torch.Generator().manual_seed(1))


def test_none_is_the_model() -> None:
    model, x = _model(), _x()
    assert torch.equal(tta.predict(model, x, "none"), model(x))


def test_flip_is_the_mean_of_image_and_mirror() -> None:
    model, x = _model(), _x()
    expected = (model(x) + model(torch.flip(x, dims=[3]))) / 2
    got = tta.predict(model, x, "flip")
    assert torch.allclose(got, expected, atol=1e-6) and not torch.allclose(got, model(x), atol=1e-3)


def test_flip_translate_is_airbench_mirror_plus_one_pixel_translations() -> None:
    model, x = _model(), _x()
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    down_right, up_left = padded[:, :, 0:6, 0:5], padded[:, :, 2:8, 2:7]

    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(v) + 0.5 * model(torch.flip(v, dims=[3]))

    expected = 0.5 * mirror(x) + 0.25 * mirror(down_right) + 0.25 * mirror(up_left)
    got = tta.predict(model, x, "flip_translate")
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, tta.predict(model, x, "flip"), atol=1e-3)
    assert down_right[0, 0, 1, 1] == x[0, 0, 0, 0] and up_left[0, 0, 0, 0] == x[0, 0, 1, 1]
    assert sum(w for w, _ in tta.views("flip_translate")) == pytest.approx(1.0)


def test_flip_of_a_flip_symmetric_input_changes_nothing() -> None:
    model, x = _model(), _x()
    sym = x + x.flip(3)
    assert torch.allclose(tta.predict(model, sym, "flip"), model(sym), atol=1e-6)


def test_channels_last_batches_keep_their_layout_and_values() -> None:
    model, x = _model(), _x()
    seen: list[bool] = []
    conv = model[0]
    conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(tta.predict(model, cl, "flip_translate"), tta.predict(model, x, "flip_translate"),
                          atol=1e-6)
    assert seen[:6] == [True] * 6


def test_tta_flip_is_the_older_name_of_flip() -> None:
    assert EngineConfig(tta_flip=True).tta == "flip"
    assert EngineConfig(tta_flip=True, tta="flip").tta == "flip"
    assert EngineConfig(tta="flip_translate").tta == "flip_translate"
    assert EngineConfig().tta == "none"
    assert EngineConfig(tta_flip=True, tta="flip_translate").tta == "flip_translate"  # it includes the mirror


TINY = {"name": "tiny", "input_shape": [3, 8, 8], "num_classes": 4, "downsample": "max_pool",
        "stages": [{"block": "conv_bn_relu", "width": 8}, {"block": "dw_separable", "width": "num_classes"}],
        "head": {"name": "gap"}}


def _cfg(tmp: Path, **trainer: Any) -> Any:
    data = {"name": "synthetic", "num_classes": 4, "image_size": 8, "num_train": 32, "num_test": 16}
    return OmegaConf.create({"task": "train", "seed": 3, "hw_targets": [], "model": TINY, "dataset": data,
                             "optimizer": {"name": "adam", "lr": 0.01},
                             "trainer": {"epochs": 1, "batch_size": 16, "progress": False, "checkpoint": "none",
                                         **trainer}})


def _run(cfg: Any, directory: Path) -> dict:
    tracker = LocalTracker(directory)
    try:
        return train_job(cfg, tracker, get_host())
    finally:
        tracker.close()


@pytest.mark.parametrize(("trainer", "mode"), [({"tta": "flip_translate"}, "flip_translate"),
                                               ({"tta_flip": True}, "flip"), ({}, "none"),
                                               ({"tta_flip": True, "tta": "flip_translate"}, "flip_translate")])
def test_the_engine_evaluates_with_the_configured_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       trainer: dict, mode: str) -> None:
    modes: list[str] = []
    real = tta.predict

    def spy(model: Any, x: Any, m: str) -> Any:
        modes.append(m)
        return real(model, x, m)

    monkeypatch.setattr(tta, "predict", spy)
    _run(_cfg(tmp_path, **trainer), tmp_path / "run")
    assert modes and set(modes) == {mode}


def test_a_bad_tta_mode_is_refused_before_training(tmp_path: Path) -> None:
    match = r"trainer\.tta='rotate': expected 'none' \| 'flip' \| 'flip_translate'"
    with pytest.raises(HairlabError, match=match) as err:
        _run(_cfg(tmp_path, tta="rotate"), tmp_path / "run")
    assert "\n" not in str(err.value)
