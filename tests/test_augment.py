"""Batched training augmentation: translate (zeros/reflect), alternating flip, cutout; seeds and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from test_training import killed_after_first_checkpoint, run, untimed

from hairlab.data.augment import alternate_flips, crop_flip, cutout, pad
from hairlab.data.tensor import TensorDataModule
from hairlab.errors import HairlabError
from hairlab.plugin_manager import registry
from hairlab.training import checkpoint as ckpt


def _images(n: int = 16, c: int = 3, h: int = 6, w: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _marked(n: int, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i: channel 0 holds i, channel 1 a bright left column, so a batch tells ids and flips."""
    x = torch.zeros(n, 2, size, size, dtype=torch.uint8)
    x[:, 0] = torch.arange(n, dtype=torch.uint8).view(n, 1, 1)
    x[:, 1, :, 0] = 255
    return x, torch.arange(n) % 2


def _module(n: int = 20, **kw: Any) -> TensorDataModule:
    x, y = _marked(n)
    kw.setdefault("normalize", False)
    return TensorDataModule("t", train=(x, y), test=(x[:4], y[:4]), num_classes=2, **kw)


def _epoch(dm: TensorDataModule, generator: torch.Generator, epoch: int | None, batch: int = 6
           ) -> dict[int, bool]:
    """{example id: flipped} for one epoch (normalize=False: pixels are x / 255)."""
    seen: dict[int, bool] = {}
    for xb, _ in dm.train_batches(batch, device="cpu", generator=generator, epoch=epoch, drop_last=False):
        raw = (xb * 255).round().to(torch.uint8)
        for img in raw:
            seen[int(img[0, 2, 2])] = bool(img[1, 2, -1] == 255)
    return seen


# -- translate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_translate_moves_pixels_by_the_amounts_drawn(mode: str) -> None:
    x, p = _images(), 2
    out = crop_flip(x, padding=p, hflip=False, generator=torch.Generator().manual_seed(4), pad_mode=mode)
    g = torch.Generator().manual_seed(4)  # the same draws, in the documented order: rows, then columns
    oy = torch.randint(0, 2 * p + 1, (16,), generator=g)
    ox = torch.randint(0, 2 * p + 1, (16,), generator=g)
    h, w = x.shape[2:]
    reflect = lambda i, n: -i if i < 0 else (2 * (n - 1) - i if i >= n else i)  # noqa: E731
    shifts = set()
    for k in range(16):
        dy, dx = p - int(oy[k]), p - int(ox[k])  # content moves down/right by dy/dx
        shifts.add((dy, dx))
        for r in range(h):
            for c in range(w):
                sr, sc = r - dy, c - dx
                if 0 <= sr < h and 0 <= sc < w:
                    expected = x[k, :, sr, sc]
                elif mode == "zeros":
                    expected = torch.zeros(3, dtype=torch.uint8)
                else:
                    expected = x[k, :, reflect(sr, h), reflect(sc, w)]
                assert torch.equal(out[k, :, r, c], expected), (k, r, c)
    assert len(shifts) > 3 and all(abs(a) <= p and abs(b) <= p for a, b in shifts)


def test_reflect_padding_mirrors_without_the_edge() -> None:
    x = torch.arange(4, dtype=torch.uint8).view(1, 1, 1, 4).expand(1, 1, 3, 4)
    assert pad(x, 2, "reflect")[0, 0, 2].tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    assert pad(x, 2, "zeros")[0, 0, 2].tolist() == [0, 0, 0, 1, 2, 3, 0, 0]


@pytest.mark.parametrize("kw", [{"crop_padding": 3, "pad_mode": "reflect"}, {"hflip": "alternate"},
                                {"cutout": 3}, {"crop_padding": 2, "hflip": True, "cutout": 2},
                                {"crop_padding": 0, "hflip": False}])
def test_uint8_in_same_shape_out(kw: dict) -> None:
    dm = _module(**kw)
    x, _ = dm.tensors("train")
    out = dm.augment(x[:8], torch.arange(8), generator=torch.Generator().manual_seed(0), epoch=1)
    assert out.dtype == torch.uint8 and out.shape == (8, 2, 6, 6)


# -- alternating flip -------------------------------------------------------------------------
def test_alternating_flip_flips_each_example_exactly_once_per_two_epochs() -> None:
    dm = _module(n=40, hflip="alternate")
    g = torch.Generator().manual_seed(11)
    epochs = [_epoch(dm, g, e) for e in (1, 2, 3, 4)]
    assert all(sorted(e) == list(range(40)) for e in epochs)  # every example, once per epoch
    for first, second in ((epochs[0], epochs[1]), (epochs[2], epochs[3])):
        assert all(first[i] != second[i] for i in range(40))  # seen both ways in each pair of epochs
    assert epochs[0] == epochs[2] and 5 < sum(epochs[0].values()) < 35  # the per-example coin, ~half
    assert epochs[1] == epochs[3]


def test_alternating_coins_follow_the_seed_not_the_call_count() -> None:
    a = _epoch(_module(n=40, hflip="alternate"), torch.Generator().manual_seed(11), 3)
    b = _module(n=40, hflip="alternate")
    g = torch.Generator().manual_seed(11)
    assert _epoch(b, g, None) == _epoch(_module(n=40, hflip="alternate"), torch.Generator().manual_seed(11), 1)
    assert _epoch(b, g, None) != a  # no epoch given: iterations count 1, 2, ... (this is epoch 2)
    other = _epoch(_module(n=40, hflip="alternate"), torch.Generator().manual_seed(12), 3)
    assert other != a
    assert alternate_flips(torch.tensor([True, False]), 2).tolist() == [False, True]


def test_random_flip_is_independent_per_epoch() -> None:
    dm = _module(n=40, hflip=True)
    g = torch.Generator().manual_seed(11)
    one, two = _epoch(dm, g, 1), _epoch(dm, g, 2)
    assert any(one[i] == two[i] for i in range(40))  # unlike alternate, some examples repeat their flip


# -- cutout ------------------------------------------------------------------------------------
def test_cutout_sets_one_clipped_square_per_image_to_the_fill() -> None:
    x = torch.full((32, 3, 9, 9), 200, dtype=torch.uint8)
    fill = torch.tensor([1, 2, 3], dtype=torch.uint8)
    out = cutout(x, size=4, generator=torch.Generator().manual_seed(0), fill=fill)
    g = torch.Generator().manual_seed(0)
    cy = torch.randint(0, 9, (32,), generator=g) - 2
    cx = torch.randint(0, 9, (32,), generator=g) - 2
    for k in range(32):
        changed = (out[k] != 200).all(0)
        rows = range(max(int(cy[k]), 0), min(int(cy[k]) + 4, 9))
        cols = range(max(int(cx[k]), 0), min(int(cx[k]) + 4, 9))
        assert int(changed.sum()) == len(rows) * len(cols)
        assert all(bool(changed[r, c]) for r in rows for c in cols)
        assert out[k, :, rows[0], cols[0]].tolist() == [1, 2, 3]
    assert cutout(x, size=0, generator=torch.Generator()) is x


def test_cutout_fills_with_the_mean_so_normalized_squares_are_zero() -> None:
    dm = _module(cutout=2, mean=[0.2, 0.4], std=[0.5, 0.5], normalize=True)
    assert dm._fill().tolist() == [51, 102]


# -- defaults, determinism, options ------------------------------------------------------------
def test_default_options_draw_exactly_as_before() -> None:
    """crop + random flip through the module equals crop_flip on the shuffled examples (same draws)."""
    x, _ = _marked(20)
    dm = _module(crop_padding=2, hflip=True)
    got = [xb for xb, _ in dm.train_batches(5, device="cpu", generator=torch.Generator().manual_seed(3))]
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(20, generator=g)
    for i, xb in enumerate(got):
        ref = crop_flip(x[perm[i * 5:(i + 1) * 5]], padding=2, hflip=True, generator=g)
        assert torch.equal((xb * 255).round().to(torch.uint8), ref)


def test_every_option_is_deterministic_by_seed() -> None:
    kw = {"crop_padding": 2, "pad_mode": "reflect", "hflip": "alternate", "cutout": 3}

    def epoch(seed: int) -> list[torch.Tensor]:
        return [xb for xb, _ in _module(**kw).train_batches(6, device="cpu", epoch=2,
                                                             generator=torch.Generator().manual_seed(seed))]

    assert all(torch.equal(a, b) for a, b in zip(epoch(1), epoch(1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(epoch(1), epoch(2), strict=True))


def test_epoch_k_after_a_restored_generator_equals_the_uninterrupted_epoch_k() -> None:
    kw = {"crop_padding": 1, "hflip": "alternate", "cutout": 2}
    g = torch.Generator().manual_seed(5)
    whole = _module(**kw)
    runs = [[xb for xb, _ in whole.train_batches(6, device="cpu", generator=g, epoch=e)] for e in (1, 2, 3)]
    g2 = torch.Generator().manual_seed(5)
    first = _module(**kw)
    for e in (1, 2):
        list(first.train_batches(6, device="cpu", generator=g2, epoch=e))
    state = ckpt.rng_state(g2)
    resumed_g = torch.Generator()
    ckpt.set_rng_state(state, resumed_g)
    again = [xb for xb, _ in _module(**kw).train_batches(6, device="cpu", generator=resumed_g, epoch=3)]
    assert all(torch.equal(a, b) for a, b in zip(runs[2], again, strict=True))


@pytest.mark.parametrize(("kw", "match"), [({"hflip": "sometimes"}, r"dataset\.hflip="),
                                           ({"pad_mode": "wrap"}, r"dataset\.pad_mode="),
                                           ({"cutout": -1}, r"dataset\.cutout"),
                                           ({"crop_padding": 6, "pad_mode": "reflect"}, "pad_mode=zeros")])
def test_bad_augmentation_options_are_one_line_errors(kw: dict, match: str) -> None:
    with pytest.raises(HairlabError, match=match) as err:
        _module(**kw)
    assert "\n" not in str(err.value)
    with pytest.raises(HairlabError, match=match.split("=")[0].replace("\\", "").split(".")[-1]):
        registry("datasets").create("synthetic", image_size=6, **kw)


def test_info_reports_the_augmentation() -> None:
    info = _module(crop_padding=1, pad_mode="reflect", hflip="alternate", cutout=2).info()
    assert (info["crop_padding"], info["pad_mode"], info["hflip"], info["cutout"]) == (1, "reflect", "alternate", 2)
    assert _module(hflip=True).info()["hflip"] is True  # the old values report as before


# -- through the engine: it passes its epoch, so resume reproduces the uninterrupted run --------
TINY = {"name": "tiny", "input_shape": [3, 8, 8], "num_classes": 4, "downsample": "max_pool",
        "stages": [{"block": "conv_bn_relu", "width": 8}, {"block": "dw_separable", "width": "num_classes"}],
        "head": {"name": "gap"}}


def _cfg(tmp: Path, **trainer: Any) -> Any:
    data = {"name": "synthetic", "num_classes": 4, "image_size": 8, "num_train": 64, "num_test": 16,
            "crop_padding": 2, "pad_mode": "reflect", "hflip": "alternate", "cutout": 3}
    return OmegaConf.create({"task": "train", "seed": 3, "hw_targets": [], "model": TINY, "dataset": data,
                             "optimizer": {"name": "adam", "lr": 0.01},
                             "trainer": {"epochs": 3, "batch_size": 16, "progress": False,
                                         "checkpoint_dir": str(tmp / "ckpt"), **trainer}})


def _run(cfg: Any, directory: Path) -> list[dict]:
    return untimed(run(cfg, directory)[1])


def test_the_engine_gives_its_epoch_and_a_resumed_run_augments_as_the_uninterrupted_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    epochs: list[int | None] = []
    real = TensorDataModule.train_batches

    def spy(self: TensorDataModule, *a: Any, **kw: Any) -> Any:
        epochs.append(kw.get("epoch"))
        return real(self, *a, **kw)

    monkeypatch.setattr(TensorDataModule, "train_batches", spy)
    full = _run(_cfg(tmp_path / "full"), tmp_path / "full")
    assert epochs[-3:] == [1, 2, 3]
    with killed_after_first_checkpoint(monkeypatch):
        _run(_cfg(tmp_path / "killed"), tmp_path / "killed")
    epochs.clear()
    resumed = _run(_cfg(tmp_path / "resumed", resume=str(tmp_path / "killed" / "ckpt")), tmp_path / "resumed")
    assert epochs[-2:] == [2, 3]
    assert resumed == full
