"""The in-memory DataModule: splits, normalization, augmentation, batching."""

from __future__ import annotations

import pytest
import torch

from hairlab.data import DataModule
from hairlab.data.augment import Normalizer, channel_stats, crop_flip
from hairlab.data.tensor import TensorDataModule
from hairlab.errors import HairlabError
from hairlab.plugin_manager import registry


def _module(n_train: int = 20, n_test: int = 7, **kw: object) -> TensorDataModule:
    # image i is filled with value i, so a batch tells which examples it holds
    xtr = torch.arange(n_train, dtype=torch.uint8).view(-1, 1, 1, 1).expand(n_train, 3, 4, 4).clone()
    xte = torch.arange(100, 100 + n_test, dtype=torch.uint8).view(-1, 1, 1, 1).expand(n_test, 3, 4, 4).clone()
    return TensorDataModule("t", train=(xtr, torch.arange(n_train) % 3), test=(xte, torch.arange(n_test) % 3),
                            num_classes=3, **kw)  # type: ignore[arg-type]


def _ids(x: torch.Tensor, dm: TensorDataModule) -> list[int]:
    """Recover the example ids (pixel values) from a normalized batch."""
    mean, std = dm.normalizer.mean[0], dm.normalizer.std[0]
    return [round(float((v * std + mean) * 255)) for v in x[:, 0, 1, 1]]


def test_splits_val_from_end_train_first_n_test_first_n() -> None:
    dm = _module(val_size=5, train_size=4, test_size=3, normalize=False)
    assert isinstance(dm, DataModule)
    assert [dm.num_examples(s) for s in ("train", "val", "test")] == [4, 5, 3]
    assert dm.num_examples("nope") == 0
    assert dm.tensors("train")[0][:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert dm.tensors("val")[0][:, 0, 0, 0].tolist() == [15, 16, 17, 18, 19]
    assert dm.tensors("test")[0][:, 0, 0, 0].tolist() == [100, 101, 102]
    # the validation split does not move when train_size changes
    assert torch.equal(_module(val_size=5).tensors("val")[0], dm.tensors("val")[0])


def test_val_fraction_and_oversized_subsets() -> None:
    dm = _module(val_size=0.25, train_size=1000)
    assert (dm.num_examples("train"), dm.num_examples("val")) == (15, 5)


@pytest.mark.parametrize("kw", [{"val_size": 20}, {"val_size": -1}, {"val_size": 1.5}, {"train_size": 0},
                                {"test_size": -3}, {"train_size": "10"}, {"crop_padding": -1},
                                {"mean": [0.5], "std": [0.2]}])
def test_bad_sizes_are_one_line_errors(kw: dict) -> None:
    with pytest.raises(HairlabError) as err:
        _module(**kw)
    assert "\n" not in str(err.value)


def test_labels_must_fit_num_classes() -> None:
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(HairlabError, match="num_classes=2"):
        TensorDataModule("t", train=(x, torch.tensor([0, 1, 2, 0])), test=(x, torch.zeros(4).long()),
                         num_classes=2)


def test_normalization_stats_come_from_train_split() -> None:
    g = torch.Generator().manual_seed(1)
    xtr = torch.randint(0, 256, (64, 3, 8, 8), generator=g, dtype=torch.uint8)
    xtr[:, 1] //= 2
    xte = torch.full((8, 3, 8, 8), 255, dtype=torch.uint8)  # must not influence the statistics
    dm = TensorDataModule("t", train=(xtr, torch.zeros(64).long()), test=(xte, torch.zeros(8).long()),
                          num_classes=1)
    mean, std = channel_stats(xtr)
    assert dm.info()["mean"] == [round(m, 6) for m in mean] and dm.info()["stats_from"] == "train split"
    ref = xtr.double() / 255
    assert mean[1] == pytest.approx(ref[:, 1].mean().item(), abs=1e-9)
    assert std[1] == pytest.approx(ref[:, 1].std(unbiased=False).item(), abs=1e-9)
    batches = torch.cat([x for x, _ in dm.eval_batches("test", 8, device="cpu")])
    assert batches.shape == (8, 3, 8, 8)
    train = torch.cat([dm.normalizer(xtr[i:i + 16]) for i in range(0, 64, 16)])
    assert train.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert (train.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4


def test_configured_stats_are_used_as_given() -> None:
    dm = _module(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert dm.info()["stats_from"] == "config"
    x, _ = next(iter(dm.eval_batches("test", 2, device="cpu")))
    assert x[0, 0, 0, 0].item() == pytest.approx((100 / 255 - 0.5) / 0.25, rel=1e-6)


def test_crop_flip_matches_a_window_of_the_padded_image() -> None:
    x = torch.randint(0, 256, (16, 3, 6, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    out = crop_flip(x, padding=2, hflip=True, generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(16):
        windows = [padded[i, :, r:r + 6, c:c + 5] for r in range(5) for c in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        mirrored = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or mirrored, i
        flips += int(mirrored and not plain)
    assert 0 < flips < 16  # both outcomes happen


def test_flip_only_keeps_or_mirrors_each_image() -> None:
    x = torch.randint(0, 256, (32, 3, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    out = crop_flip(x, padding=0, hflip=True, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(out[i], x[i]) for i in range(32)]
    mirrored = [torch.equal(out[i], x[i].flip(-1)) for i in range(32)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True)) and 0 < sum(same) < 32
    assert crop_flip(x, padding=0, hflip=False, generator=torch.Generator()) is x


def test_train_epoch_covers_every_example_once_and_is_reproducible() -> None:
    dm = _module(n_train=23, crop_padding=0, hflip=False)
    batches = dm.train_batches(5, device="cpu", generator=torch.Generator().manual_seed(7))
    assert len(batches) == 5
    ids = [i for x, _ in batches for i in _ids(x, dm)]
    assert sorted(ids) == list(range(23)) and ids != list(range(23))
    again = [i for x, _ in dm.train_batches(5, device="cpu", generator=torch.Generator().manual_seed(7))
             for i in _ids(x, dm)]
    assert again == ids
    other = [i for x, _ in dm.train_batches(5, device="cpu", generator=torch.Generator().manual_seed(8))
             for i in _ids(x, dm)]
    assert other != ids


def test_labels_follow_their_images() -> None:
    dm = _module(n_train=20, crop_padding=1, hflip=True)
    for x, y in dm.train_batches(6, device="cpu", generator=torch.Generator().manual_seed(0)):
        centre = _ids(x, dm)  # pixel (1,1) of a 4x4 image stays inside after a 1-pixel crop shift
        assert [c % 3 for c in centre] == y.tolist()


@pytest.mark.parametrize(("n", "drop_last", "sizes"), [(21, None, [5, 5, 5, 5]), (22, None, [5, 5, 5, 5, 2]),
                                                      (21, False, [5, 5, 5, 5, 1]), (22, True, [5, 5, 5, 5])])
def test_drop_last(n: int, drop_last: bool | None, sizes: list[int]) -> None:
    dm = _module(n_train=n)
    batches = dm.train_batches(5, device="cpu", generator=torch.Generator(), drop_last=drop_last)
    assert [len(y) for _, y in batches] == sizes and len(batches) == len(sizes)


def test_eval_batches_are_ordered_unaugmented_and_channels_last_on_request() -> None:
    dm = _module(val_size=4, crop_padding=2, hflip=True)
    xs = list(dm.eval_batches("val", 3, device="cpu", memory_format=torch.channels_last))
    assert [len(y) for _, y in xs] == [3, 1]
    assert [i for x, _ in xs for i in _ids(x, dm)] == [16, 17, 18, 19]
    assert xs[0][0].is_contiguous(memory_format=torch.channels_last)
    assert xs[0][0].dtype == torch.float32
    with pytest.raises(HairlabError):
        dm.eval_batches("train", 3, device="cpu")


def test_normalizer_rejects_zero_std() -> None:
    with pytest.raises(HairlabError):
        Normalizer([0.0], [0.0])


# -- synthetic -------------------------------------------------------------------------------
def test_synthetic_is_deterministic_by_seed_and_shaped_by_config() -> None:
    make = registry("datasets").get("synthetic").factory
    a = make(num_classes=4, image_size=8, channels=1, num_train=40, num_test=12, seed=3)
    b = make(num_classes=4, image_size=8, channels=1, num_train=40, num_test=12, seed=3)
    c = make(num_classes=4, image_size=8, channels=1, num_train=40, num_test=12, seed=4)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 4 and a.name == "synthetic"
    assert a.num_examples("train") == 40 and a.num_examples("test") == 12
    assert torch.equal(a.tensors("train")[0], b.tensors("train")[0])
    assert torch.equal(a.tensors("test")[1], b.tensors("test")[1])
    assert not torch.equal(a.tensors("train")[0], c.tensors("train")[0])
    assert sorted(set(a.tensors("train")[1].tolist())) == [0, 1, 2, 3]


def test_synthetic_classes_are_separable() -> None:
    """Nearest class mean on the training set classifies the test set: there is signal to learn."""
    dm = registry("datasets").create("synthetic", num_train=200, num_test=100, image_size=8)
    xtr, ytr = dm.tensors("train")
    xte, yte = dm.tensors("test")
    means = torch.stack([xtr[ytr == k].float().mean(0) for k in range(10)])
    pred = torch.cdist(xte.float().flatten(1), means.flatten(1)).argmin(1)
    assert (pred == yte).float().mean() > 0.9


def test_synthetic_rejects_unknown_and_bad_options() -> None:
    make = registry("datasets").get("synthetic").factory
    with pytest.raises(HairlabError, match=r"dataset\.colour is not an option"):
        make(colour=True)
    with pytest.raises(HairlabError, match="image_size"):
        make(image_size=0)


def test_synthetic_config_builds_through_hydra_config(tmp_path) -> None:
    from hairlab.hydra_app import compose

    cfg = compose(["dataset=synthetic", "dataset.train_size=64", "dataset.val_size=16"])
    options = {k: v for k, v in cfg.dataset.items() if k != "name"}
    dm = registry("datasets").create(cfg.dataset.name, **options)
    assert (dm.num_examples("train"), dm.num_examples("val")) == (64, 16)
    assert dm.num_classes == cfg.dataset.num_classes


def test_large_images_take_the_slicing_path_with_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    import hairlab.data.augment as augment

    x = torch.randint(0, 256, (12, 3, 9, 7), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for padding, hflip in ((3, True), (0, True), (2, False)):
        gathered = crop_flip(x, padding=padding, hflip=hflip, generator=torch.Generator().manual_seed(5))
        monkeypatch.setattr(augment, "GATHER_MAX_PIXELS", 0)
        sliced = crop_flip(x, padding=padding, hflip=hflip, generator=torch.Generator().manual_seed(5))
        monkeypatch.undo()
        assert torch.equal(gathered, sliced), (padding, hflip)


@pytest.mark.parametrize(("key", "value"), [("train_size", "abc"), ("hflip", "yes"), ("noise", "loud"),
                                            ("mean", 0.5), ("val_size", "some")])
def test_option_types_are_checked_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(HairlabError, match=rf"dataset\.{key}=") as err:
        registry("datasets").create("synthetic", **{key: value})
    assert "\n" not in str(err.value)


def test_batches_are_built_single_threaded_and_the_caller_keeps_its_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import hairlab.data.augment as augment_mod

    seen: list[int] = []

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return crop_flip(*a, **k)

    monkeypatch.setattr(augment_mod, "crop_flip", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        dm = _module(n_train=20, crop_padding=1, hflip=True)
        for _ in dm.train_batches(5, device="cpu", generator=torch.Generator()):
            assert torch.get_num_threads() == 2  # the model step runs with the caller's setting
        assert seen == [1, 1, 1, 1]
        dm.cpu_threads = None
        for _ in dm.eval_batches("test", 5, device="cpu"):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
