"""The typed contract end to end: a bad value is one line, exit 2, before any data or run exists.

Each case runs the real ``hairlab run`` path (Hydra composition, the task function, the sweep
callback) against a real SQLite MLflow store that already holds an experiment, then counts the
runs in it: a check that came too late would leave a FAILED run behind.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

from hairlab import contract
from hairlab.errors import HairlabError
from hairlab.plugin_manager import PluginHost, get_host


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory whose ./mlflow.db already exists (schema migrated, one experiment)."""
    from mlflow.tracking import MlflowClient

    d = tmp_path_factory.mktemp("contract")
    MlflowClient(f"sqlite:///{d / 'mlflow.db'}").create_experiment("hairlab")
    return d


def run_count(directory: Path) -> int:
    with sqlite3.connect(directory / "mlflow.db") as db:
        return int(db.execute("select count(*) from runs").fetchone()[0])


def hairlab_run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hairlab run ARGS`` in this process (the CLI's path minus its exception printer)."""
    from hydra.core.global_hydra import GlobalHydra

    from hairlab import hydra_app
    from hairlab.runner import task_function

    monkeypatch.chdir(cwd)
    GlobalHydra.instance().clear()
    try:
        hydra_app.run(args, task_function)
    finally:
        GlobalHydra.instance().clear()


BAD = [
    # (overrides, the line's required parts)
    (["trainer.epochs=many"], ["trainer.epochs='many'", "expected int", "trainer settings of hairlab"]),
    (["trainer.grad_clip=-1"], ["trainer.grad_clip=-1.0", "expected a number > 0 or null"]),
    (["dataset.train_size=abc"], ["dataset.train_size='abc'", "expected int", "dataset 'cifar10'",
                                  "plugin datasets"]),
    (["hardware.matrix_flops=fast"], ["hardware.matrix_flops='fast'", "expected float", "hardware 'paper2012'",
                                      "plugin hardware"]),
    (["optimizer.typo=1"], ["optimizer.typo is not an option of optimizer 'adam' (plugin optim", "valid options: "]),
    (["+optimizer.typo=1"], ["optimizer.typo is not an option of optimizer 'adam'"]),
    (["dataset.typo=1"], ["dataset.typo is not an option of dataset 'cifar10' (plugin datasets"]),
    (["hardware.typo=1"], ["hardware.typo is not an option of hardware 'paper2012' (plugin hardware"]),
    (["trainer.typo=1"], ["trainer.typo is not an option of trainer settings of hairlab"]),
    (["tracking.typo=1"], ["tracking.typo is not an option of tracking settings of hairlab"]),
    (["+model.head.typo=1"], ["model.head.typo is not an option of head 'gap' (plugin hairnet"]),
    (["+model.stages.0.typo=1"], ["model.stages[0].typo is not an option of block 'conv_bn_relu' (plugin hairnet"]),
    (["model.typo=1"], ["model.typo is not"]),
    (["optimizer=sgd", "optimizer.momentum=-1"], ["optimizer.momentum=-1.0: expected a number >= 0",
                                                  "optimizer 'sgd'"]),
    (["tracking.heartbeat_s=0"], ["tracking.heartbeat_s"]),
    (["hardware=nope"], ["unknown hardware entry 'nope'; available: "]),
    (["seed=abc"], ["seed='abc': expected int"]),  # an `optional` default drops it silently
]


@pytest.mark.parametrize("overrides,parts", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_values_fail_in_one_line_before_any_run(overrides: list[str], parts: list[str], store_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAIRLAB_DATA", str(tmp_path / "no-data-here"))
    before = run_count(store_dir)
    with pytest.raises(HairlabError) as info:
        hairlab_run([*overrides, "trainer.max_steps=1"], store_dir, monkeypatch)
    line = str(info.value)
    assert "\n" not in line
    for part in parts:
        assert part in line, line
    assert run_count(store_dir) == before
    assert not (tmp_path / "no-data-here").exists()  # nothing looked for, let alone downloaded


def test_lr_abc_with_the_default_dataset_is_exit_2_and_no_run(store_dir: Path, tmp_path: Path) -> None:
    """The issue's own case: CIFAR-10 is neither located nor downloaded; the lr is named."""
    data = tmp_path / "data"
    before = run_count(store_dir)
    proc = run_cli(["run", "optimizer=adam", "optimizer.lr=abc"], cwd=store_dir,
                   env={"HAIRLAB_DATA": str(data)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hairlab: optimizer.lr='abc': expected float"), lines
    assert "optimizer 'adam' (plugin optim, hairlab " in lines[0]
    assert "cifar" not in lines[0].lower()
    assert run_count(store_dir) == before and not data.exists()


def test_range_error_is_exit_2_and_no_run(store_dir: Path) -> None:
    before = run_count(store_dir)
    proc = run_cli(["run", "trainer.grad_clip=-1"], cwd=store_dir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("hairlab: trainer.grad_clip=-1.0: expected a number > 0 or null "
                                   "(trainer settings of hairlab)")
    assert run_count(store_dir) == before


def test_a_sweep_is_checked_job_by_job_before_its_first_job(store_dir: Path) -> None:
    """Job 0 is fine, job 1 is not: nothing runs, not even the sweep's parent run."""
    before = run_count(store_dir)
    proc = run_cli(["run", "-m", "dataset=synthetic", "trainer.max_steps=1", "optimizer=adam,sgd",
                    "optimizer.beta1=0.5"], cwd=store_dir)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("hairlab: sweep job 1 (")
    assert "optimizer=sgd" in line and "optimizer.beta1 is not an option of optimizer 'sgd'" in line
    assert run_count(store_dir) == before


def test_sweep_jobs_are_the_basic_sweepers() -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.create({"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper."
                                                                  "BasicSweeper", "params": {"seed": "0,1"}},
                                         "overrides": {"task": ["optimizer=adam,sgd", "trainer.epochs=2"]}}})
    jobs = contract.preflight.sweep_jobs(config)
    assert jobs is not None and len(jobs) == 4
    assert all("trainer.epochs=2" in job for job in jobs)
    assert {tuple(sorted(j)) for j in jobs} == {
        tuple(sorted([f"seed={s}", f"optimizer={o}", "trainer.epochs=2"])) for s in (0, 1) for o in ("adam", "sgd")}
    other = OmegaConf.create({"hydra": {"sweeper": {"_target_": "hydra_plugins.optuna.OptunaSweeper"}}})
    assert contract.preflight.sweep_jobs(other) is None


def test_an_optimizer_without_yaml_is_a_config_option() -> None:
    """A plugin's optimizer becomes ``optimizer=NAME`` from its schema alone (here: its factory keywords)."""
    from hairlab import hookimpl
    from hairlab.registry import Entry

    def make_lion(params: object, lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99,
                  weight_decay: float = 0.0) -> object:
        return ("lion", lr)

    def make_opaque(params: object, **options: object) -> object:
        return options

    class Plugin:
        @hookimpl
        def hairlab_optimizers(self) -> list[Entry]:
            return [Entry("lion", make_lion, "Lion"), Entry("opaque", make_opaque, "no readable options")]

    host = PluginHost()
    host.register(Plugin(), "example", "hairlab-example-plugin", "0.1")
    host.collect()

    class Store:
        def __init__(self) -> None:
            self.nodes: dict[str, tuple[type, str]] = {}

        def store(self, *, group: str, name: str, node: type, provider: str) -> None:
            self.nodes[f"{group}/{name}"] = (node, provider)

    store = Store()
    contract.register_schemas(host, store)
    node, provider = store.nodes["optimizer/lion"]
    assert provider == "example" and "optimizer/schema/lion" in store.nodes
    from omegaconf import OmegaConf

    assert OmegaConf.to_container(OmegaConf.structured(node)) == {
        "name": "lion", "lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
    assert contract.build(host, "optimizers", {"name": "lion", "lr": "3e-4"}, [], where="optimizer") == \
        ("lion", 3e-4)
    with pytest.raises(HairlabError, match=r"optimizer\.lr='fast': expected float \(optimizer 'lion' "
                                           r"\(plugin example, hairlab-example-plugin 0\.1\)\)"):
        contract.build(host, "optimizers", {"name": "lion", "lr": "fast"}, [], where="optimizer")
    assert {"trainer/default", "tracking/mlflow", "tracking/local", "model/schema/convnet"} <= set(store.nodes)
    assert store.nodes["optimizer/opaque"][0] == {"name": "opaque"}  # selectable; its options go unchecked
    assert contract.build(host, "optimizers", {"name": "opaque", "anything": 1}, [], where="optimizer") == \
        {"anything": 1}


def test_options_carry_one_line_help_for_listings() -> None:
    """Every built-in option has help; `hairlab list KIND NAME` shows it from the schema."""
    from hairlab.training.config import EngineConfig

    host = get_host()
    schemas = [EngineConfig] + [contract.schema_of(e, kind) for kind in ("optimizers", "datasets", "hardware",
                                                                        "blocks", "heads")
                                for e in host.registry(kind) if e.plugin in ("optim", "datasets", "hardware")]
    for schema in schemas:
        for option in contract.options(schema):
            assert option.help and "\n" not in option.help, f"{schema.__name__}.{option.name}"
    lr = next(o for o in contract.options(host.registry("optimizers").get("adam").schema) if o.name == "lr")
    assert (lr.type, lr.default) == ("float", 1e-3) and "step size" in lr.help


def test_no_process_wide_host_in_the_build_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """With get_host() broken, everything below an entry point still works from the host it is given."""
    import hairlab.plugin_manager as pm
    from hairlab.models import build_model
    from hairlab.training.job import build_data, build_optimizer

    host = PluginHost()
    host.load_entrypoints()
    host.collect()

    def forbidden() -> PluginHost:
        raise AssertionError("get_host() called below an entry point")

    monkeypatch.setattr(pm, "get_host", forbidden)
    model = {"input_shape": [3, 8, 8], "num_classes": 3, "stages": [{"block": "conv_bn_relu", "width": 3}],
             "head": {"name": "gap"}}
    net = build_model(model, host)
    build_optimizer(net, {"name": "sgd"}, host)
    data = build_data({"name": "synthetic", "num_classes": 3, "image_size": 8, "num_train": 8, "num_test": 4}, host)
    assert data.num_classes == 3
    contract.check_config({"model": model, "optimizer": {"name": "adam"}, "dataset": {"name": "synthetic"},
                           "trainer": {"epochs": 1}, "hw_targets": "auto"}, host)


def test_cache_dir_honours_xdg_and_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hairlab.data.paths import cache_dir

    monkeypatch.delenv("HAIRLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "hairlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "hairlab"
    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_the_training_docs_list_exactly_the_trainer_schema() -> None:
    """docs/training.md's options table stays true: one row per EngineConfig field, defaults as in it."""
    import dataclasses
    import re

    from hairlab.training.config import EngineConfig

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    table = text.split("## Options (`trainer.*`)", 1)[1].split("\n\n", 2)[1]
    documented: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`(\w+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split("/")]
        for name, default in zip(names, defaults * len(names) if len(defaults) == 1 else defaults, strict=True):
            documented[name] = default
    fields = {f.name: f.default for f in dataclasses.fields(EngineConfig)}
    assert set(documented) == set(fields)

    def same(doc: str, value: object) -> bool:
        if value is None or isinstance(value, bool):
            return doc == {None: "null", True: "true", False: "false"}[value]
        if isinstance(value, (int, float)):
            return float(doc) == value
        return doc == str(value)

    for name, default in fields.items():
        assert same(documented[name], default), f"{name}: docs say {documented[name]}, the schema {default!r}"


def test_the_whole_config_check_imports_neither_torch_nor_mlflow(tmp_path: Path) -> None:
    """The check is cheap enough to run before every job and every sweep."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from hairlab.hydra_app import compose\n"
            "from hairlab.contract import check_config\n"
            "from hairlab.plugin_manager import get_host\n"
            "check_config(compose(['+experiment=cifar_fast']), get_host())\n"
            "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_required_option_left_unset_is_named() -> None:
    """A schema field without default is ``???`` in the stored node; unset, it is one line, not a value."""
    from dataclasses import dataclass

    from hairlab import hookimpl
    from hairlab.registry import Entry

    @dataclass
    class NpzOptions:
        path: str = contract.opt(help="the .npz file")
        num_classes: int = contract.opt(10, "classes")

    class Plugin:
        @hookimpl
        def hairlab_datasets(self) -> list[Entry]:
            return [Entry("npz_images", lambda **o: o, "npz", NpzOptions)]

    host = PluginHost()
    host.register(Plugin(), "mobilenet", "hairlab-mobilenet", "0.1")
    host.collect()
    with pytest.raises(HairlabError, match=r"^dataset\.path is required by dataset 'npz_images' \(plugin mobilenet"):
        contract.validate(host, "datasets", {"name": "npz_images", "path": "???"}, where="dataset")
    assert contract.build(host, "datasets", {"name": "npz_images", "path": "a.npz"}, where="dataset") == \
        {"path": "a.npz", "num_classes": 10}


def test_a_factory_that_exits_is_a_failed_build_not_the_end_of_hairlab() -> None:
    from hairlab import hookimpl
    from hairlab.registry import Entry

    def exits(params: object) -> object:
        raise SystemExit(0)

    def interrupted(params: object) -> object:
        raise KeyboardInterrupt

    class Plugin:
        @hookimpl
        def hairlab_optimizers(self) -> list[Entry]:
            return [Entry("exits", exits, "x"), Entry("interrupted", interrupted, "x")]

    host = PluginHost()
    host.register(Plugin(), "rude", "hairlab-rude", "1.0")
    host.collect()
    with pytest.raises(HairlabError, match=r"^optimizer 'exits' \(plugin rude, hairlab-rude 1\.0\) failed to build: "
                                           r"SystemExit: 0$"):
        contract.build(host, "optimizers", {"name": "exits"}, [], where="optimizer")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C (and SIGTERM, delivered as one) still stops the run
        contract.build(host, "optimizers", {"name": "interrupted"}, [], where="optimizer")


def test_an_option_named_like_a_contract_keyword_is_a_failed_build_not_a_traceback() -> None:
    """A block whose schema dataclass declares ``stride``, which hairlab also passes: one worded line."""
    from dataclasses import dataclass

    from hairlab import hookimpl
    from hairlab.registry import Entry

    @dataclass
    class StridedOptions:
        stride: int = 1

    def block(c_in: int, c_out: int, stride: int = 1) -> object:
        return object()

    class Plugin:
        @hookimpl
        def hairlab_blocks(self) -> list[Entry]:
            return [Entry("strided", block, "x", StridedOptions)]

    host = PluginHost()
    host.register(Plugin(), "clash", "hairlab-clash", "1.0")
    host.collect()
    with pytest.raises(HairlabError, match=r"^block 'strided' \(plugin clash, hairlab-clash 1\.0\) failed to build: "
                                           r"TypeError: .*multiple values for keyword argument 'stride'"):
        contract.build(host, "blocks", {"name": "strided", "stride": 2}, 3, 8, where="block", stride=1)


def test_a_yaml_preset_extends_a_schema_and_a_same_named_yaml_replaces_it(tmp_path: Path) -> None:
    """`schema/<name>@_here_` gives a preset the schema's keys and types; no Hydra schema-matching warning."""
    import warnings

    from omegaconf import OmegaConf

    from hairlab.hydra_app import compose

    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "fast_adam.yaml").write_text("defaults:\n  - schema/adam@_here_\n  - _self_\nlr: 0.01\n")
    (tmp_path / "optimizer" / "sgd.yaml").write_text("defaults:\n  - schema/sgd@_here_\n  - _self_\nlr: 0.3\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    fast = OmegaConf.to_container(compose(["optimizer=fast_adam", search]).optimizer)
    assert fast == {"name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                    "decoupled": False}
    with pytest.raises(HairlabError, match=r"optimizer\.typo is not an option of optimizer 'adam'"):
        compose(["optimizer=fast_adam", "optimizer.typo=1", search])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Hydra's deprecated automatic schema matching would warn
        sgd = compose(["optimizer=sgd", search]).optimizer
    assert (sgd.name, sgd.lr, sgd.momentum) == ("sgd", 0.3, 0.9)
    assert compose(["optimizer=sgd"]).optimizer.lr == 0.1  # the schema node is back without the YAML


def test_a_composed_config_pickles_and_unpickles_in_a_fresh_process(tmp_path: Path) -> None:
    """Node classes live in hairlab.contract.nodes: plain pickle works (multiprocessing spawn, caches)."""
    import pickle
    import subprocess
    import sys

    from hairlab.hydra_app import compose

    path = tmp_path / "cfg.pkl"
    path.write_bytes(pickle.dumps(compose(["optimizer=sgd", "optimizer.lr=0.05"])))
    code = ("import pickle, sys\n"
            f"cfg = pickle.loads(open({str(path)!r}, 'rb').read())\n"
            "print(cfg.optimizer.name, cfg.optimizer.lr, cfg.trainer.epochs)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sgd", "0.05", "None"], out.stderr[-2000:]  # epochs: null = max_steps or 1


def test_missing_data_is_one_line_before_the_sweeps_parent_or_any_run(store_dir: Path, tmp_path: Path) -> None:
    """A sweep pointed at no data: one line and exit 2 before the parent run, not a FAILED run per job.

    (Seen in a real 14-job sweep started without HAIRLAB_DATA: every job made a FAILED run.)
    """
    data = tmp_path / "empty"
    data.mkdir()
    before = run_count(store_dir)
    proc = run_cli(["run", "-m", "dataset=cifar10", "dataset.download=false", "trainer.max_steps=1", "seed=0,1"],
                   cwd=store_dir, env={"HAIRLAB_DATA": str(data)})
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("hairlab: sweep job 0 ("), line
    assert f"cifar10: no CIFAR-10 data at {data} (from $HAIRLAB_DATA) and dataset.download=false" in line
    assert "HAIRLAB_DATA=PATH" in line  # the fix
    assert run_count(store_dir) == before


@pytest.mark.parametrize("overrides,part", [
    (["dataset.download=false"], "cifar10: no CIFAR-10 data at "),
    (["dataset=imagefolder", "dataset.root=/no/such/tree"], "imagefolder: /no/such/tree (from dataset.root) "
                                                             "does not exist"),
], ids=["cifar10", "imagefolder"])
def test_missing_data_of_one_run_is_one_line_and_no_run(overrides: list[str], part: str, store_dir: Path,
                                                         tmp_path: Path) -> None:
    before = run_count(store_dir)
    proc = run_cli(["run", *overrides, "trainer.max_steps=1"], cwd=store_dir,
                   env={"HAIRLAB_DATA": str(tmp_path / "nothing")})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hairlab: {part}"), lines
    assert run_count(store_dir) == before


def test_a_profile_job_does_not_look_for_data(tmp_path: Path) -> None:
    """Only a training job needs its data: costing a model runs without any."""
    from omegaconf import OmegaConf

    host = get_host()
    cfg = OmegaConf.create({"task": "profile", "dataset": {"name": "cifar10", "root": str(tmp_path / "none"),
                                                           "download": False}})
    contract.check_data(cfg, host)  # no error
    cfg.task = "train"
    with pytest.raises(HairlabError, match="no CIFAR-10 data"):
        contract.check_data(cfg, host)


def test_a_preflight_that_raises_is_worded_and_each_dataset_config_is_checked_once(tmp_path: Path) -> None:
    """A plugin's own exception names the entry and plugin; a sweep's shared dataset is checked once."""
    from omegaconf import OmegaConf

    from hairlab import hookimpl
    from hairlab.registry import Entry

    calls: list[dict[str, object]] = []

    def flaky(**options: object) -> None:
        calls.append(options)
        raise OSError("share not mounted")

    class Plugin:
        @hookimpl
        def hairlab_datasets(self) -> list[Entry]:
            return [Entry("mounted", lambda **_: None, "Data on a share.", preflight=flaky)]

    host = PluginHost()
    host.register(Plugin(), name="mounted_plugin", distribution="dist-mounted", version="1.0")
    host.collect()
    cfg = OmegaConf.create({"task": "train", "dataset": {"name": "mounted"}})
    with pytest.raises(HairlabError, match=r"dataset 'mounted' \(plugin mounted_plugin.*failed its pre-flight "
                                           r"check: OSError: share not mounted"):
        contract.check_data(cfg, host)
    seen: set[str] = set()
    with pytest.raises(HairlabError):
        contract.check_data(cfg, host, seen)
    contract.check_data(cfg, host, seen)  # the same config again: not checked twice
    assert len(calls) == 2


@pytest.mark.parametrize("target,here", [
    ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", True),
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", True),
    ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", True),
    ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", False),
    ("hydra_plugins.hydra_ray_launcher.ray_aws_launcher.RayAWSLauncher", False),
], ids=["basic", "joblib", "submitit_local", "submitit_slurm", "ray_aws"])
def test_a_sweep_checks_the_data_only_where_its_jobs_run(target: str, here: bool) -> None:
    """A SLURM job may read node-local data the submitting host cannot see: its job checks it."""
    from omegaconf import OmegaConf

    from hairlab.contract.preflight import runs_here

    assert runs_here(OmegaConf.create({"hydra": {"launcher": {"_target_": target}}})) is here
