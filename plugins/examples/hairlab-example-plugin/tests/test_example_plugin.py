"""The plugin's own tests: build its model and optimizer through a PluginHost made here.

No hairlab process, no Hydra, no global state: the host is an object the test owns, as
pytest's own plugins test with a ``config.pluginmanager`` of their own. Run with
``pytest`` from this directory (with hairlab installed).
"""

from __future__ import annotations

from importlib import resources

import hairlab_example
import hairlab_example.blocks
import pytest
import torch
import yaml

from hairlab.api import HairlabError, PluginHost, build_model


@pytest.fixture(scope="module")
def host() -> PluginHost:
    """hairlab's built-ins (blocks such as ``conv_bn_relu``, heads) plus this plugin."""
    host = PluginHost()
    host.load_entrypoints()  # installed plugins, this one too when pip-installed
    if "example" not in host.records:  # run from a source checkout: register it by hand
        host.register(hairlab_example, name="example")
    host.collect()
    assert host.records["example"].status == "ok", host.records["example"].reason
    return host


def preset() -> dict:
    """The packaged ``model=example_resnet`` preset, as a plain mapping."""
    text = resources.files("hairlab_example.conf").joinpath("model/example_resnet.yaml").read_text()
    cfg = yaml.safe_load(text)
    cfg.pop("defaults")  # Hydra's defaults list (hairlab's model schema); build_model fills the defaults
    cfg["num_classes"] = 10  # the YAML takes it from the dataset (an interpolation)
    return cfg


def test_model_builds_from_the_preset_and_runs(host: PluginHost) -> None:
    model = build_model(preset(), host)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert sum(isinstance(m, hairlab_example.blocks.ResidualDW) for m in model.modules()) == 6


def test_lion_trains_through_the_build_path(host: PluginHost) -> None:
    model = build_model({**preset(), "stages": preset()["stages"][:2]}, host)
    opt = host.build("optimizers", {"name": "lion", "lr": 1e-3}, model.parameters(), where="optimizer")
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(("node", "fragment"), [
    ({"name": "lion", "lr": -1.0}, "lr=-1.0: expected a number > 0"),
    ({"name": "lion", "lr": "fast"}, "optimizer.lr='fast'"),
    ({"name": "lion", "betas": [0.9, 0.99]}, "betas"),
])
def test_bad_options_are_one_line_naming_this_plugin(host: PluginHost, node: dict, fragment: str) -> None:
    with pytest.raises(HairlabError) as info:
        host.validate("optimizers", node, where="optimizer")
    message = str(info.value)
    assert fragment in message and "plugin example" in message and "\n" not in message


def test_block_options_are_checked(host: PluginHost) -> None:
    cfg = preset()
    cfg["stages"][1]["kernel_size"] = 4
    with pytest.raises(HairlabError, match="kernel_size=4: expected an odd integer"):
        build_model(cfg, host)
