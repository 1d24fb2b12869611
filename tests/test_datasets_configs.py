"""Every dataset config composes through Hydra and matches its factory's options."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
from data_fixtures import fake_batches
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from hairlab.plugin_manager import registry

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
NAMES = sorted(p.stem for p in CONF.glob("*.yaml"))
COMMON = {"name", "num_classes", "image_size", "root", "train_size", "test_size", "val_size",
          "crop_padding", "hflip", "normalize", "mean", "std"}


def dataset_cfg(name: str, *overrides: str) -> dict:
    with initialize_config_module(config_module="hairlab_conf", version_base=None):
        cfg = compose(config_name="config", overrides=[f"dataset={name}", *overrides])
    return OmegaConf.to_container(cfg.dataset, resolve=True)  # type: ignore[return-value]


def test_the_three_builtins_are_registered_and_configured() -> None:
    assert {"cifar10", "imagefolder", "synthetic"} <= set(NAMES)
    assert {"cifar10", "imagefolder", "synthetic"} <= set(registry("datasets").names())


@pytest.mark.parametrize("name", NAMES)
def test_config_keys_match_the_factory(name: str) -> None:
    cfg = dataset_cfg(name)
    assert cfg["name"] == name
    assert COMMON <= set(cfg), f"{name}.yaml lacks {sorted(COMMON - set(cfg))}"
    assert isinstance(cfg["num_classes"], int) and isinstance(cfg["image_size"], int)
    assert cfg["root"] is None and cfg["train_size"] is None and cfg["test_size"] is None
    assert cfg["val_size"] == 0
    build = importlib.import_module(f"hairlab_plugins.datasets.{name}").build
    params = inspect.signature(build).parameters
    assert set(cfg) - {"name"} == set(params), "config keys and factory options must agree"
    for key, value in cfg.items():
        if key != "name" and params[key].default is not inspect.Parameter.empty:
            default = params[key].default
            assert default == value, f"{name}.{key}: config {value!r} vs code {default!r}"


def test_model_configs_take_num_classes_from_the_dataset() -> None:
    with initialize_config_module(config_module="hairlab_conf", version_base=None):
        cfg = compose(config_name="config", overrides=["dataset=synthetic", "dataset.num_classes=7"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert 7 in model.values() or any(v == 7 for v in _walk(model)), model


def _walk(node: object):
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)
    else:
        yield node


def test_cifar10_config_with_overrides_builds(tmp_path: Path) -> None:
    fake_batches(tmp_path / "cifar-10-batches-py")
    cfg = dataset_cfg("cifar10", f"dataset.root={tmp_path}", "dataset.train_size=12", "dataset.val_size=4",
                      "dataset.test_size=3", "dataset.download=false")
    dm = registry("datasets").create(cfg.pop("name"), **cfg)
    assert [dm.num_examples(s) for s in ("train", "val", "test")] == [12, 4, 3]
