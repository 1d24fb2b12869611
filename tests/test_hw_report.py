"""`hairlab hw-report`, the host target, per-run latency metrics and task=profile."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from conftest import REPO, pip_install, run_cli

from hairlab.commands import hw_report as hw_report_cmd
from hairlab.errors import HairlabError
from hairlab.plugin_manager import get_host

EXAMPLE = REPO / "plugins" / "examples" / "hairlab-example-plugin"


def hw_report(overrides: list[str], **kwargs: object) -> None:
    """The command as the CLI runs it, with the host the CLI makes."""
    hw_report_cmd.hw_report(overrides, get_host(), **kwargs)  # type: ignore[arg-type]


def test_json_report_has_layers_and_totals(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["model=hairnet_cifar", "hardware=paper2012", "hardware.mode=corrected"]
    hw_report(args, fmt="json", output=out)
    data = json.loads(out.read_text())
    assert {"latency_s", "transfer_s", "compute_s", "params", "flops", "macs"} <= set(data["totals"])
    layers = data["layers"]
    assert layers[0]["layer_name"] == "conv2D" and layers[-1]["layer_name"] == "SoftMax"
    for key in ("in_map_MB", "out_map_MB", "param_MB", "flops", "macs", "in_map_loc", "out_map_loc",
                "param_loc", "transfer_time_s", "compute_time_s", "total_time_s", "bound"):
        assert key in layers[0]
    total = sum(row["total_time_s"] for row in layers)
    assert data["totals"]["latency_s"] == pytest.approx(total)
    assert data["target"]["mode"] == "corrected" and data["input_shape"] == [3, 32, 32]


def test_csv_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hw_report(["model=hairnet_cifar", "hardware.batch_size=8", "hardware.overlap=true"], fmt="csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {"layer_name", "total_time_s", "bound"} <= set(rows[0])
    assert all(float(r["total_time_s"]) == pytest.approx(max(float(r["transfer_time_s"]),
                                                              float(r["compute_time_s"]))) for r in rows)
    md = tmp_path / "r.md"
    hw_report(["model=hairnet_cifar"], fmt="markdown", output=md)
    text = md.read_text()
    assert "| layer_name |" in text.replace("| index | layer_name |", "| layer_name |")
    assert "Where the time goes" in text


def test_cli_compare_reference_and_roofline(tmp_path: Path) -> None:
    png = tmp_path / "roof.png"
    res = run_cli(["hw-report", "model=hairnet_imagenet", "hardware=paper2012", "hardware.mode=corrected",
                   "--compare-reference", "--plot", str(png)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    # The comparison uses the reference's own options (paper2012: the faithful mode), whatever was asked.
    assert "total: computed 0.177158 s, printed 0.177 s; 0 cell(s) differ in 66 rows" in res.stdout
    assert "vs the paper's appendix" in res.stdout
    assert "where the time goes" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The old flag still works, hidden, with a deprecation line.
    res = run_cli(["hw-report", "model=hairnet_imagenet", "--compare-paper"], cwd=tmp_path)
    assert res.returncode == 0 and "0 cell(s) differ in 66 rows" in res.stdout, res.stderr
    assert "--compare-paper is deprecated" in res.stderr
    assert "--compare-paper" not in run_cli(["hw-report", "--help"], cwd=tmp_path).stdout


def test_rows_are_named_by_the_target_not_after_the_paper(tmp_path: Path) -> None:
    """AlexNet on h100_sxm gets hairlab's generic row names; only paper2012 labels rows its way."""
    out = tmp_path / "alexnet.json"
    hw_report(["model=alexnet", "hardware=h100_sxm"], fmt="json", output=out)
    names = [row["layer_name"] for row in json.loads(out.read_text())["layers"]]
    assert names[0] == "conv1" and "dense1" in names and names[-1] == "softmax1", names
    paper_style = ("conv2D", "BN_RELU", "dwise_conv", "pointwise_conv", "max_pool", "SoftMax", "GAP")
    assert not [n for n in names if n.startswith(paper_style)], names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["hardware=nope"], "unknown hardware entry 'nope'"),
        (["hardware.mode=fast"], "hardware.mode='fast': expected 'faithful' | 'corrected' (hardware 'paper2012'"),
        (["hardware.bus_bandwidth=fast"], "hardware.bus_bandwidth='fast': expected float (hardware 'paper2012'"),
        (["hardware.bus_bandwith=1e9"], "bus_bandwith"),
        (["model=hairnet_cifar", "hardware.input_size=[3,2,2]"], "cannot run on input"),
    ],
)
def test_bad_overrides_give_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    res = run_cli(["hw-report", *args], cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert fragment in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_compare_reference_needs_a_reference() -> None:
    with pytest.raises(HairlabError, match="no printed reference"):
        hw_report(["model=hairnet_cifar", "hardware=h100_sxm"], compare_reference=True)


def test_host_target_and_measure(tmp_path: Path) -> None:
    out = tmp_path / "host.json"
    hw_report(["model=hairnet_cifar", "hardware=host"], fmt="json", output=out, measure=True)
    data = json.loads(out.read_text())
    assert data["target"]["name"] == "host" and data["target"]["kind_rates"]["dwconv"] > 0
    m = data["measurement"]
    assert m["total_s"] > 0 and m["threads"] == 1 and m["clock"] == "thread CPU time"
    measured = [row["measured_s"] for row in data["layers"]]
    assert all(x is not None and x > 0 for x in measured)
    row = data["layers"][0]
    assert row["predicted_over_measured"] == pytest.approx(row["total_time_s"] / row["measured_s"])
    # The calibration is cached: a second build reads it instead of measuring.
    from hairlab.costmodel.calibrate import cache_dir, cached_only
    from hairlab.plugin_manager import registry

    assert list(cache_dir().glob("*.json"))
    with cached_only():
        assert registry("hardware").create("host").kind_rates == data["target"]["kind_rates"]


def test_latency_metrics_is_cheap_and_skips_uncalibrated_host(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from hairlab.costmodel import latency_metrics
    from hairlab.hydra_app import compose
    from hairlab.models import build_model

    monkeypatch.setenv("HAIRLAB_CACHE", str(tmp_path))  # no calibration cached here
    model = build_model(compose(["model=hairnet_cifar"]).model, get_host())
    metrics = latency_metrics(model, (3, 32, 32), ["paper2012", "host"])
    keys = ("latency_s", "transfer_s", "compute_s", "flops", "macs", "params")
    assert set(metrics) == {f"hw/paper2012/{k}" for k in keys}
    assert metrics["hw/paper2012/params"] == sum(p.numel() for p in model.parameters())
    assert model.training
    with pytest.raises(HairlabError, match="unknown hardware entry 'nope'"):
        latency_metrics(model, (3, 32, 32), ["nope"])


def test_profile_job_logs_metrics(tmp_path: Path) -> None:
    from hairlab.costmodel.profile import profile_job
    from hairlab.hydra_app import compose
    from hairlab.tracking.base import LocalTracker, read_metrics

    cfg = compose(["task=profile", "model=hairnet_cifar", "tracking=local", "hardware.mode=corrected"])
    tracker = LocalTracker(tmp_path)
    metrics = profile_job(cfg, tracker, get_host())
    tracker.close()
    logged = read_metrics(tmp_path)[0]
    assert logged["hw/paper2012/latency_s"] == pytest.approx(metrics["hw/paper2012/latency_s"])
    assert logged["model/params"] > 0
    # The composed hardware config (mode=corrected) is what gets reported for its name.
    assert metrics["hw/paper2012/flops"] < 1e9


def test_report_on_third_party_blocks() -> None:
    """A model made of the example plugin's residual blocks: extraction, rows and costs."""
    from hairlab.costmodel.engine import estimate
    from hairlab.costmodel.layers import extract_layers
    from hairlab.models import build_model
    from hairlab.plugin_manager import PluginHost

    sys.path.insert(0, str(EXAMPLE))
    try:
        import hairlab_example

        host = PluginHost()  # the built-ins, plus the example registered by hand (not installed here)
        host.load_entrypoints()
        if "example" not in host.records:
            host.register(hairlab_example, name="example")
        host.collect()
        cfg = {"name": "example_resnet", "input_shape": [3, 32, 32], "num_classes": 10,
               "downsample": "stride",
               "stages": [{"block": "conv_bn_relu", "width": 16, "downsample": False},
                          {"block": "residual_dw", "width": 32, "repeat": 2}],
               "head": {"name": "dense"}}
        model = build_model(cfg, host)
        layers = extract_layers(model, (3, 32, 32))
        kinds = [layer.kind for layer in layers]
        assert kinds.count("add") == 2 and "dense" in kinds and kinds.count("dwconv") == 2
        report = estimate(layers, host.registry("hardware").create("paper2012", mode="corrected"))
        assert report.rows[-1].kind == "softmax" and report.totals["latency_s"] > 0
        assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in [m for m in sys.modules if m.startswith("hairlab_example")]:
            sys.modules.pop(name)


@pytest.mark.slow
def test_cli_on_a_pip_installed_plugins_model(child_env: Path, tmp_path: Path) -> None:
    """`hw-report model=example_resnet` where the model's blocks come from a real pip install."""
    pip_install(child_env, EXAMPLE)
    out = tmp_path / "r.json"
    args = ["hw-report", "model=example_resnet", "hardware.mode=corrected", "-f", "json", "-o", str(out)]
    res = run_cli(args, cwd=tmp_path, python=str(child_env))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    kinds = [row["kind"] for row in data["layers"]]
    assert kinds.count("add") == 6 and "dense" in kinds and kinds[-1] == "softmax"
    assert any(row["module"].startswith("body.stage2.block1.depthwise") for row in data["layers"])


def test_paper2012_is_corrected_unless_faithful_is_asked(tmp_path: Path) -> None:
    """Issue 12's honest default: the plain target, and every run's hw/paper2012/* metrics, count
    depthwise convs as grouped; faithful (the appendix's rules) only when asked for."""
    from hairlab.costmodel.api import latency_metrics
    from hairlab.hydra_app import compose
    from hairlab.models import build_model

    cfg = compose([])
    assert cfg.hardware.name == "paper2012" and cfg.hardware.mode == "corrected"
    from omegaconf import OmegaConf

    params = OmegaConf.load(REPO / "conf" / "experiment" / "params.yaml").hydra.sweeper.params
    assert params["hardware.mode"] == "faithful,corrected"  # the params experiment keeps both modes
    out = tmp_path / "r.json"
    hw_report(["model=hairnet_cifar"], fmt="json", output=out)
    default = json.loads(out.read_text())
    hw_report(["model=hairnet_cifar", "hardware.mode=faithful"], fmt="json", output=out)
    faithful = json.loads(out.read_text())
    assert default["target"]["mode"] == "corrected" and faithful["target"]["mode"] == "faithful"
    assert default["totals"]["flops"] < faithful["totals"]["flops"] / 2  # depthwise no longer counted dense
    model = build_model(cfg.model, get_host(), num_classes=10, input_shape=(3, 32, 32))
    logged = latency_metrics(model, (3, 32, 32), ["paper2012"])  # what a training run logs by default
    assert logged["hw/paper2012/flops"] == pytest.approx(default["totals"]["flops"])
