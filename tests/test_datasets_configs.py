"""Every dataset is configured by its schema alone: composed through Hydra, checked before loading."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
from data_fixtures import fake_batches
from omegaconf import OmegaConf

from hairlab import contract
from hairlab.errors import HairlabError
from hairlab.hydra_app import compose
from hairlab.plugin_manager import get_host

REPO = Path(__file__).resolve().parents[1]
BUILTINS = ("cifar10", "imagefolder", "synthetic")
COMMON = {"name", "num_classes", "image_size", "root", "train_size", "test_size", "val_size",
          "crop_padding", "pad_mode", "hflip", "cutout", "normalize", "mean", "std"}


def dataset_cfg(name: str, *overrides: str) -> dict:
    cfg = compose([f"dataset={name}", *overrides])
    return OmegaConf.to_container(cfg.dataset, resolve=True)  # type: ignore[return-value]


def test_the_builtins_are_registered_with_schemas_and_no_yaml() -> None:
    datasets = get_host().registry("datasets")
    assert set(BUILTINS) <= set(datasets.names())
    assert all(datasets.get(n).schema is not None for n in BUILTINS)
    assert not (REPO / "conf" / "dataset").exists(), "dataset options are defined by the schemas only"


@pytest.mark.parametrize("name", BUILTINS)
def test_the_composed_node_is_the_schema_and_matches_the_factory(name: str) -> None:
    cfg = dataset_cfg(name)
    schema = get_host().registry("datasets").get(name).schema
    fields = {f.name: f for f in dataclasses.fields(schema)}
    assert cfg["name"] == name
    assert COMMON <= set(cfg), f"{name} lacks {sorted(COMMON - set(cfg))}"
    assert set(cfg) - {"name"} == set(fields)
    for key, value in cfg.items():
        if key != "name":
            assert value == contract.schema.default_of(fields[key]), key
            assert fields[key].metadata.get("help"), f"{name}.{key} has no help"
    build = importlib.import_module(f"hairlab_plugins.datasets.{name}").build
    assert set(inspect.signature(build).parameters) == set(fields), "schema and build() must agree"


def test_model_configs_take_num_classes_from_the_dataset() -> None:
    cfg = compose(["dataset=synthetic", "dataset.num_classes=7"])
    assert OmegaConf.to_container(cfg.model, resolve=True)["num_classes"] == 7


@pytest.mark.parametrize("override,match", [
    ("dataset.train_size=abc", r"dataset\.train_size='abc': expected int"),
    ("dataset.typo_key=1", r"dataset\.typo_key is not an option of dataset 'cifar10' \(plugin datasets"),
    ("dataset.val_size=-2", r"dataset\.val_size=-2: expected a count >= 0"),
    ("dataset.num_classes=100", r"dataset\.num_classes=100: cifar10 has 10 classes"),
])
def test_bad_dataset_options_fail_before_loading(override: str, match: str) -> None:
    """Type and key errors come from Hydra's composition (the stored schema), ranges from the check."""
    with pytest.raises(HairlabError, match=match) as info:
        contract.check_config(compose([override]), get_host())
    assert "\n" not in str(info.value)


def test_the_factory_never_sees_unchecked_options() -> None:
    seen: list[dict] = []
    host = get_host()
    entry = host.registry("datasets").get("synthetic")
    host.registry("datasets")._entries["spy"] = dataclasses.replace(entry, name="spy", factory=lambda **o: seen.append(o))
    try:
        with pytest.raises(HairlabError, match=r"dataset\.train_size='abc': expected int or null"):
            contract.build(host, "datasets", {"name": "spy", "train_size": "abc", "typo_key": 1}, where="dataset")
        with pytest.raises(HairlabError, match=r"dataset\.typo_key is not an option"):
            contract.build(host, "datasets", {"name": "spy", "typo_key": 1}, where="dataset")
    finally:
        del host.registry("datasets")._entries["spy"]
    assert seen == []


def test_cifar10_config_with_overrides_builds(tmp_path: Path) -> None:
    fake_batches(tmp_path / "cifar-10-batches-py")
    cfg = compose(["dataset=cifar10", f"dataset.root={tmp_path}", "dataset.train_size=12", "dataset.val_size=4",
                   "dataset.test_size=3", "dataset.download=false", "dataset.workers=1"])
    dm = contract.build(get_host(), "datasets", cfg.dataset, where="dataset")
    assert [dm.num_examples(s) for s in ("train", "val", "test")] == [12, 4, 3]


def test_a_dataset_factory_error_names_its_plugin() -> None:
    from hairlab import hookimpl
    from hairlab.plugin_manager import PluginHost
    from hairlab.registry import Entry

    def npz_images(root: str = "x") -> object:
        import numpy_typo_does_not_exist  # noqa: F401

        return None

    class Plugin:
        @hookimpl
        def hairlab_datasets(self) -> list[Entry]:
            return [Entry("npz_images", npz_images, "test")]

    host = PluginHost()
    host.register(Plugin(), "mobilenet", "hairlab-mobilenet", "0.1")
    host.collect()
    with pytest.raises(HairlabError) as info:
        contract.build(host, "datasets", {"name": "npz_images"}, where="dataset")
    assert str(info.value) == ("dataset 'npz_images' (plugin mobilenet, hairlab-mobilenet 0.1) failed to build: "
                               "ModuleNotFoundError: No module named 'numpy_typo_does_not_exist'")
    with pytest.raises(HairlabError, match=r"dataset\.typo is not an option of dataset 'npz_images'"):
        contract.build(host, "datasets", {"name": "npz_images", "typo": 1}, where="dataset")
