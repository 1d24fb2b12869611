"""The worked examples of docs/plugins.md run as written: a hardware target, datasets, a plugin's tests.

Each ``# docs-example: NAME`` code block is executed as a module of its own and, where it
defines hooks, registered in a PluginHost beside hairlab's built-ins, then built through it.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO

from hairlab.errors import HairlabError
from hairlab.plugin_manager import PluginHost

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

DOC = REPO / "docs" / "plugins.md"
EXAMPLE = REPO / "plugins" / "examples" / "hairlab-example-plugin"


def example(name: str) -> types.ModuleType:
    """The docs' code block marked ``# docs-example: name``, executed as a module."""
    blocks = re.findall(r"```python\n(# docs-example: (\w+)\n.*?)```", DOC.read_text(), flags=re.S)
    code = {label: text for text, label in blocks}
    assert name in code, sorted(code)
    module = types.ModuleType(f"docs_example_{name}")
    sys.modules[module.__name__] = module  # dataclasses resolve annotations through sys.modules
    exec(compile(code[name], f"{DOC}:{name}", "exec"), module.__dict__)
    return module


def host_with(module: types.ModuleType, name: str) -> PluginHost:
    host = PluginHost()
    host.load_entrypoints()
    host.register(module, name=name, distribution="docs-example", version="0")
    host.collect()
    assert host.records[name].status == "ok", host.records[name].reason
    return host


def test_worked_hardware_target() -> None:
    from hairlab.commands.plugins import entry_options
    from hairlab.costmodel.engine import estimate
    from hairlab.costmodel.layers import extract_layers

    host = host_with(example("hardware"), "edge")
    target = host.build("hardware", {"name": "edge_npu", "batch_size": 2, "input_size": 16}, where="hardware")
    assert target.name == "edge_npu" and target.batch_size == 2 and target.overlap
    assert target.bytes_per_element == 1 and target.input_size == (3, 16, 16)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 10))
    report = estimate(extract_layers(model, (3, 32, 32)), target, input_shape=(3, 32, 32))
    assert report.totals["latency_s"] > 0 and [r.layer_name for r in report.rows][:2] == ["conv1", "bn_relu1"]
    assert any(r.unit == "dwconv rate" for r in report.rows)
    with pytest.raises(HairlabError, match=r"hardware\.matrix_flops=-1.0: expected a number > 0.*plugin edge"):
        host.validate("hardware", {"name": "edge_npu", "matrix_flops": -1.0}, where="hardware")
    options = {o["option"]: o for o in entry_options(host.registry("hardware").get("edge_npu"), "hardware")}
    assert options["bus_bandwidth"]["help"] == "LPDDR4x, bytes/s" and options["batch_size"]["default"] == 1


def test_worked_dataset(tmp_path: Path) -> None:
    host = host_with(example("dataset"), "npz")
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, x_train=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), y_train=np.arange(20) % 4,
             x_test=rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), y_test=np.arange(6) % 4)
    dm = host.build("datasets", {"name": "npz_images", "path": str(path), "num_classes": 4, "val_size": 4},
                    where="dataset")
    assert (dm.num_examples("train"), dm.num_examples("val"), dm.num_examples("test")) == (16, 4, 6)
    assert dm.input_shape == (3, 8, 8) and dm.info()["source"] == str(path)
    batches = list(dm.train_batches(5, device="cpu", generator=torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [5, 5, 5]  # the trailing single example is dropped
    assert batches[0][0].dtype == torch.float32 and batches[0][0].shape == (5, 3, 8, 8)
    with pytest.raises(HairlabError, match=r"dataset\.path is required by dataset 'npz_images' \(plugin npz"):
        host.validate("datasets", {"name": "npz_images"}, where="dataset")
    with pytest.raises(HairlabError, match="cannot read it"):
        host.build("datasets", {"name": "npz_images", "path": str(tmp_path / "nope.npz")}, where="dataset")


def test_worked_base_datamodule() -> None:
    from hairlab.data import DataModule

    module = example("basedatamodule")
    x = torch.randint(0, 256, (23, 3, 4, 4), dtype=torch.uint8)
    dm = module.ArrayDataModule(x, torch.arange(23) % 3, num_classes=3, val_size=3)
    assert isinstance(dm, DataModule)
    assert (dm.num_examples("train"), dm.num_examples("val"), dm.num_examples("test")) == (20, 3, 0)
    train = dm.train_batches(6, device="cpu", generator=torch.Generator().manual_seed(1))
    assert [len(y) for _, y in train] == [6, 6, 6, 2]  # a tail of two examples is kept
    xb, _ = train[0]
    assert xb.dtype == torch.float32 and abs(float(xb.mean())) < 0.5
    assert [len(y) for _, y in dm.eval_batches("val", 2, device="cpu")] == [2, 1]
    info = dm.info()
    assert info["train_examples"] == 20 and info["stats_from"] == "train split" and len(info["mean"]) == 3
    with pytest.raises(HairlabError, match="eval split must be"):
        dm.eval_batches("train", 2, device="cpu")


def test_the_testing_section_runs() -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        module = example("testing")
        module.test_model_and_optimizer()
        module.test_bad_option_is_one_line()
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in [m for m in sys.modules if m.startswith("hairlab_example")]:
            sys.modules.pop(name)
