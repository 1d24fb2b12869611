"""The engine's recipe features: weight averaging (trainer.ema), per-group rates, the time budget
(trainer.max_minutes, on a fake clock: no timed assertion) and amp=auto's cached CPU probe."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from test_training import TINY_MODEL, TinyData, killed_after_first_checkpoint, make_cfg, run, untimed

from hairlab import contract
from hairlab.plugin_manager import PluginHost
from hairlab.training import budget as budget_module
from hairlab.training import precision
from hairlab.training.averaging import EMAConfig, WeightAverage
from hairlab.training.config import EngineConfig
from hairlab.training.engine import Engine
from hairlab.training.job import build_optimizer
from hairlab.training.runtime import amp_choice
from hairlab.training.schedules import fraction_factor, lr_factor, make_scheduler

CPU = torch.device("cpu")


class NullTracker:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.rows: list[dict[str, float]] = []

    def log_params(self, params: Any) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append({**metrics, "step": step})
    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)
    def log_artifact(self, path: Any, artifact_path: Any = None) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


def tiny_model(host: PluginHost) -> torch.nn.Module:
    from hairlab.models import build_model

    torch.manual_seed(0)
    return build_model(OmegaConf.create(TINY_MODEL), host, num_classes=4, input_shape=(3, 16, 16))


def engine(host: PluginHost, tmp: Path | None = None, data: Any = None, **trainer: Any) -> Engine:
    model = tiny_model(host)
    opt = build_optimizer(model, {"name": "adam", "lr": 0.01}, host)
    cfg = contract.settings(EngineConfig, {"epochs": 2, "batch_size": 16, "progress": False, "log_every": 2,
                                           "checkpoint": "none", "amp": False, **trainer}, where="trainer")
    return Engine(model, opt, data or TinyData(), cfg, NullTracker(), device=CPU, seed=1, checkpoint_dir=tmp)


def manual_eval(model: torch.nn.Module, data: TinyData) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for x, y in data.eval_batches("test", 32, device=CPU):
            logits = model(x.contiguous(memory_format=torch.channels_last)).float()
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return loss / 64, correct / 64


# -- trainer.ema ---------------------------------------------------------------------------------
def test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_evaluated(host: PluginHost) -> None:
    eng = engine(host, ema={"decay": 0.8})
    eng.fit()
    assert eng.averager is not None and eng.eval_model is eng.averager.averaged.module
    raw = dict(eng.model.named_parameters())
    averaged = dict(eng.eval_model.named_parameters())
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)
    loss, acc = eng.evaluate("test")
    assert eng.model.training  # evaluation leaves the raw model training
    assert (loss, acc) == pytest.approx(manual_eval(eng.eval_model, eng.data), rel=1e-6)
    assert loss != pytest.approx(manual_eval(eng.model, eng.data)[0], rel=1e-6)


def test_no_ema_evaluates_the_raw_model(host: PluginHost) -> None:
    eng = engine(host)
    eng.fit()
    assert eng.averager is None and eng.eval_model is eng.model
    assert eng.evaluate("test") == pytest.approx(manual_eval(eng.model, eng.data), rel=1e-6)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def _shift(model: torch.nn.Module, by: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(by)
        model[1].running_mean.add_(by)


def _never(step: int) -> float:
    return 0.0


@pytest.mark.parametrize("options,expected", [
    ({"decay": 0.0}, 1.0),  # the raw weights
    ({"decay": 1.0}, 0.0),  # frozen at the first update
    ({"decay": 0.75}, 0.25),
    ({"half_life": 1.0}, 0.5),  # halves each update
    ({"half_life": 2.0, "every": 2}, 0.5),  # decay = 0.5 ** (every / half_life)
])
def test_ema_decay_edge_cases(options: dict[str, Any], expected: float) -> None:
    model = _net()
    avg = WeightAverage(model, EMAConfig(**options))
    every = options.get("every", 1)
    avg.update(model, every, _never)  # the first update copies the weights
    first = {k: v.clone() for k, v in avg.averaged.module.state_dict().items()}
    _shift(model, 1.0)
    avg.update(model, 2 * every, _never)
    for key, value in avg.averaged.module.state_dict().items():
        if key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean"):  # all shifted by 1
            assert torch.allclose(value, first[key] + expected), key
    assert int(avg.averaged.module[1].num_batches_tracked) == int(model[1].num_batches_tracked)


def test_ema_every_warmup_and_buffers() -> None:
    model = _net()
    avg = WeightAverage(model, EMAConfig(decay=0.5, every=2, warmup=3))
    assert avg.model(model) is model  # nothing averaged yet: the raw model is evaluated
    avg.update(model, 2, _never)
    assert not avg.started()  # before warmup
    avg.update(model, 3, _never)
    assert avg.started() and avg.model(model) is avg.averaged.module  # first update at warmup, off-cycle
    before = avg.averaged.module[0].weight.clone()
    _shift(model, 1.0)
    avg.update(model, 5, _never)  # not a multiple of every
    assert torch.equal(avg.averaged.module[0].weight, before)
    avg.update(model, 6, _never)
    assert torch.allclose(avg.averaged.module[0].weight, before + 0.5)
    fraction = WeightAverage(model, EMAConfig(warmup=0.5))
    fraction.update(model, 1, lambda step: 0.4)
    assert not fraction.started()
    fraction.update(model, 2, lambda step: 0.5)
    assert fraction.started()
    copy = WeightAverage(model, EMAConfig(decay=1.0, buffers="copy"))
    copy.update(model, 1, _never)
    _shift(model, 1.0)
    copy.update(model, 2, _never)
    assert torch.equal(copy.averaged.module[1].running_mean, model[1].running_mean)  # copied, not averaged
    assert not torch.equal(copy.averaged.module[0].weight, model[0].weight)  # the weights stay averaged


@pytest.mark.parametrize("key,value,match", [
    ("decay", 1.5, r"trainer\.ema\.decay=1\.5: expected a number in \[0, 1\]"),
    ("half_life", 0, r"trainer\.ema\.half_life=0\.0: expected"),
    ("every", 0, r"trainer\.ema\.every=0: expected an integer >= 1"),
])
def test_bad_ema_options_are_one_line(key: str, value: Any, match: str) -> None:
    from hairlab.errors import HairlabError

    with pytest.raises(HairlabError, match=match):
        contract.settings(EngineConfig, {"ema": {key: value}}, where="trainer")
    assert contract.settings(EngineConfig, {"ema": True}, where="trainer").averaging == EMAConfig()
    assert contract.settings(EngineConfig, {"ema": None}, where="trainer").averaging is None


def test_ema_resume_equals_an_uninterrupted_run_and_best_holds_the_average(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ema = {"decay": 0.7, "every": 2}
    _, full, tracker = run(make_cfg(tmp_path / "full", epochs=3, ema=ema, checkpoint="both"), tmp_path / "full")
    assert "EMA of the weights" in tracker.tags["hairlab.ema"]
    with killed_after_first_checkpoint(monkeypatch):
        run(make_cfg(tmp_path / "killed", epochs=3, ema=ema), tmp_path / "killed")
    state = torch.load(tmp_path / "killed" / "ckpt" / "last.pt", weights_only=True)
    assert state["ema"] and int(state["ema"]["n_averaged"]) > 0
    _, resumed, _ = run(make_cfg(tmp_path / "resumed", epochs=3, ema=ema,
                                 resume=str(tmp_path / "killed" / "ckpt")), tmp_path / "resumed")
    assert untimed(resumed) == untimed(full)
    # best.pt holds the averaged weights: loaded into a fresh model they give the best value again
    best = torch.load(tmp_path / "full" / "ckpt" / "best.pt", weights_only=True)
    from hairlab.models import build_model
    from hairlab.plugin_manager import get_host

    cfg = make_cfg(tmp_path / "x")
    fresh = build_model(cfg.model, get_host(), num_classes=4, input_shape=(3, 16, 16))
    fresh.load_state_dict(best["model"])
    from hairlab.training.job import build_data

    data = build_data(cfg.dataset, get_host())
    fresh.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in data.eval_batches("test", 64, device=CPU):
            correct += int((fresh(x).argmax(1) == y).sum())
            n += y.shape[0]
    assert correct / n == pytest.approx(best["best"]["value"])


# -- per-group rates --------------------------------------------------------------------------------
def test_group_rates_keep_their_ratio_under_a_schedule(host: PluginHost) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    opt = build_optimizer(model, {"name": "sgd", "lr": 0.1}, host, bias_lr_scale=8.0, norm_weight_lr_scale=0.0)
    by_scale = {g["lr_scale"]: g for g in opt.param_groups}
    assert set(by_scale) == {1.0, 8.0, 0.0}
    assert [p.ndim for p in by_scale[1.0]["params"]] == [4, 2]  # conv and dense kernels
    assert len(by_scale[8.0]["params"]) == 3 and by_scale[8.0]["weight_decay"] == 0.0  # conv, BN, dense biases
    assert by_scale[0.0]["params"] == [model[1].weight] and by_scale[0.0]["weight_decay"] == 0.0
    assert by_scale[1.0]["weight_decay"] == 5e-4
    sched = make_scheduler(opt, {"schedule": "onecycle", "warmup": 0.3}, 10)
    factor = lr_factor("onecycle", 10, 3)
    for k in range(1, 7):
        opt.step()
        sched.step()
        for scale, group in by_scale.items():
            assert group["lr"] == pytest.approx(0.1 * scale * factor(k)), (k, scale)


def test_group_rates_apply_in_a_training_run(tmp_path: Path) -> None:
    result, rows, _ = run(make_cfg(tmp_path, bias_lr_scale=4.0, norm_weight_lr_scale=0.0, schedule="cosine"),
                          tmp_path / "run")
    assert result["status"] == "finished"
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["optimizer"]
    lrs = sorted((g["lr_scale"], g["lr"]) for g in state["param_groups"])
    first = [r["lr"] for r in rows if "lr" in r][-1]  # the logged rate is the weights' group's
    assert [scale for scale, _ in lrs] == [0.0, 1.0, 4.0]
    assert lrs[2][1] == pytest.approx(4 * lrs[1][1]) and lrs[1][1] == pytest.approx(first) and lrs[0][1] == 0


# -- trainer.max_minutes, on a fake clock -------------------------------------------------------------
class FakeClock:
    """The budget's clock: it moves only when a training batch is handed over (``tick`` seconds each)."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        return self.now


class TickingData(TinyData):
    """TinyData whose every training batch costs ``clock.tick`` seconds on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def train_batches(self, batch_size: int, *, device: Any, generator: Any):
        batches = super().train_batches(batch_size, device=device, generator=generator)
        clock = self.clock

        class Ticking:
            def __len__(self) -> int:
                return len(batches)

            def __iter__(self):
                for batch in batches:
                    clock.now += clock.tick
                    yield batch
        return Ticking()


def test_budget_drives_the_schedule_and_ends_the_run(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(10.0)
    monkeypatch.setattr(budget_module, "clock", clock)
    eng = engine(host, data=TickingData(clock), epochs=None, max_minutes=1.0, schedule="cosine", eval_every=3)
    assert not eng.bounded and eng.ends_by == "max_minutes"
    lrs: dict[int, float] = {}
    real_step = eng.scheduler.step

    def record() -> None:
        real_step()
        lrs[eng.scheduler.last_epoch] = eng.optimizer.param_groups[0]["lr"]
    monkeypatch.setattr(eng.scheduler, "step", record)
    outcome = eng.fit()
    # 10 s per step on a 60 s budget: six steps (4 per epoch at batch 16), then it stops
    assert outcome.step == 6 and outcome.stop_reason == "max_minutes" == eng.tracker.tags["hairlab.stop_reason"]
    at = fraction_factor("cosine", 0.0)
    assert lrs == pytest.approx({k: 0.01 * at(10 * k / 60) for k in range(1, 7)})
    points = [r for r in eng.tracker.rows if "train/loss" in r]
    assert [r["step"] for r in points] == [3, 4, 6]  # eval_every, the epoch's end, the budget's end
    assert [r["time/train_s"] for r in points] == [30.0, 40.0, 60.0]  # evaluations are not charged


def test_budget_with_max_steps_whichever_ends_first(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(1.0)
    monkeypatch.setattr(budget_module, "clock", clock)
    eng = engine(host, data=TickingData(clock), epochs=None, max_steps=5, max_minutes=1.0, schedule="cosine")
    assert eng.bounded and eng.total_steps == 5
    outcome = eng.fit()
    assert outcome.step == 5 and outcome.stop_reason == "max_steps"
    # the schedule follows the share further along: here the steps' (5 of 5) over the budget's (5 of 60 s)
    assert eng.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * fraction_factor("cosine", 0.0)(1.0))
    assert eng.progress_at(2) == pytest.approx(max(5 / 60, 2 / 5))


def test_budget_resume_continues_the_elapsed_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed budget run, resumed, ends where the uninterrupted one did, on the same curve."""
    def budget_run(name: str, **extra: Any) -> tuple[dict, list[dict], Any]:
        clock = FakeClock(10.0)
        monkeypatch.setattr(budget_module, "clock", clock)
        real = TinyData.train_batches

        def ticking(self: Any, batch_size: int, *, device: Any, generator: Any) -> Any:
            for batch in real(self, batch_size, device=device, generator=generator):
                clock.now += clock.tick
                yield batch
        monkeypatch.setattr(TinyData, "train_batches", ticking)
        cfg = make_cfg(tmp_path / name, epochs=None, max_minutes=1.5, schedule="onecycle", **extra)
        return run(cfg, tmp_path / name)

    monkeypatch.setattr("hairlab.training.job.build_data", lambda cfg, host: TinyData())
    result, full, tracker = budget_run("full")
    assert result["stop_reason"] == "max_minutes" and result["step"] == 9  # 90 s at 10 s a step
    assert "evaluations and checkpoints not counted" in tracker.tags["hairlab.budget"]
    with killed_after_first_checkpoint(monkeypatch):
        budget_run("killed")
    state = torch.load(tmp_path / "killed" / "ckpt" / "last.pt", weights_only=True)
    assert state["budget"]["train_s"] == 20.0 and state["step"] == 2
    result, resumed, _ = budget_run("resumed", resume=str(tmp_path / "killed" / "ckpt"))
    assert result["step"] == 9 and result["stop_reason"] == "max_minutes"
    assert untimed(resumed) == untimed(full)
    assert [r.get("time/train_s") for r in resumed] == [r.get("time/train_s") for r in full]


def test_budget_options() -> None:
    from hairlab.errors import HairlabError

    with pytest.raises(HairlabError, match=r"trainer\.max_minutes=0\.0: expected a number of minutes > 0"):
        contract.settings(EngineConfig, {"max_minutes": 0}, where="trainer")
    with pytest.raises(HairlabError, match=r"trainer\.warmup=100\.0: with max_minutes the warmup is a fraction"):
        contract.settings(EngineConfig, {"max_minutes": 5, "warmup": 100}, where="trainer")
    at = fraction_factor("onecycle", 0.25, 0.1)
    assert at(0.0) == pytest.approx(1 / 25) and at(0.25) == pytest.approx(1.0) and at(1.0) == pytest.approx(0.1)
    assert fraction_factor("warmup", 0.0)(0.025) == pytest.approx(0.5)  # the default 5% warmup, linear in time
    assert math.isclose(fraction_factor("constant", 0.0)(0.7), 1.0)


# -- trainer.amp=auto on a CPU ----------------------------------------------------------------------
def test_amp_auto_reads_the_cache_and_skips_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_measure(*args: Any, **kw: Any) -> dict[str, Any]:
        calls.append(1)
        return {"fp32_s": 0.3, "bf16_s": 0.2, "speedup": 1.5, "steps": 1, "batch": 1}
    monkeypatch.setattr(precision, "measure", fake_measure)
    monkeypatch.setattr(precision, "bf16_kernels", lambda: True)
    path = precision.cache_file()
    path.unlink(missing_ok=True)
    dtype, name, why = amp_choice("auto", CPU)
    assert (dtype, name) == (torch.bfloat16, "bf16") and "probe" in why and calls == [1]
    assert json.loads(path.read_text())["choice"] == "bf16"
    dtype, name, why = amp_choice("auto", CPU)  # cached: no second probe
    assert name == "bf16" and why.startswith("auto: cached probe") and calls == [1]
    path.write_text(json.dumps({"version": precision.VERSION, "choice": "fp32", "speedup": 0.8}))
    assert amp_choice("auto", CPU)[:2] == (None, "fp32") and calls == [1]
    path.unlink()
    monkeypatch.setattr(precision, "bf16_kernels", lambda: False)
    assert amp_choice("auto", CPU)[1:] == ("fp32", "auto: no bf16 kernels on this CPU") and not path.exists()
    assert amp_choice("bf16", CPU)[:2] == (torch.bfloat16, "bf16") and amp_choice(False, CPU)[1] == "fp32"
    fake_measure()
    calls.clear()
    monkeypatch.setattr(precision, "bf16_kernels", lambda: True)
    monkeypatch.setattr(precision, "measure", lambda *a, **k: {"fp32_s": 0.3, "bf16_s": 0.29, "speedup": 1.03,
                                                                "steps": 1, "batch": 1})
    assert amp_choice("auto", CPU)[1] == "fp32"  # a win below the margin keeps fp32
    path.unlink()


def test_amp_choice_is_tagged_and_the_real_probe_measures(tmp_path: Path) -> None:
    path = precision.cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": precision.VERSION, "choice": "fp32", "speedup": 0.9}))
    try:
        _, _, tracker = run(make_cfg(tmp_path, epochs=1), tmp_path / "run")
    finally:
        path.unlink()
    assert tracker.tags["hairlab.amp"] == "fp32" and str(path) in tracker.tags["hairlab.amp_source"]
    figures = precision.measure(steps=1, batch=4)  # the real probe, tiny: both precisions run
    assert figures["fp32_s"] > 0 and figures["bf16_s"] > 0 and figures["speedup"] > 0


@pytest.mark.slow
def test_compile_trains(tmp_path: Path) -> None:
    result, rows, _ = run(make_cfg(tmp_path, epochs=1, compile=True), tmp_path / "run")
    assert result["status"] == "finished" and all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)


def test_budget_progress_shows_the_budget_left() -> None:
    import io

    from rich.console import Console

    from hairlab.training.progress import EpochProgress

    out = io.StringIO()
    bar = EpochProgress(True, Console(file=out, force_terminal=False, width=200), interval=0.0, position="")
    bar.plan_time(lambda: 42.0)
    bar.start(1, 0, 4)
    bar.update(1, 1.5, 0.25, 100.0)
    bar.stop()
    line = out.getvalue()
    assert "epoch 1  step 1  loss 1.5000" in line and "ETA job 42s" in line and "/0" not in line


def test_hairlab_run_max_minutes_cli(tmp_path: Path) -> None:
    """The real CLI with a budget of a few milliseconds: it ends by the budget whatever the machine's speed."""
    from conftest import run_cli

    from hairlab.tracking.base import read_metrics

    out = tmp_path / "job"
    proc = run_cli(["run", "model=hairnet_cifar", "dataset=synthetic", "dataset.num_train=64",
                    "dataset.num_test=16", "trainer.batch_size=8", "trainer.max_minutes=0.0001",
                    "trainer.schedule=onecycle", "trainer.ema=true", "tracking=local", "hw_targets=[]",
                    f"hydra.run.dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tags = json.loads((out / "tags.json").read_text())
    assert tags["status"] == "FINISHED" and tags["hairlab.stop_reason"] == "max_minutes"
    assert "evaluations and checkpoints not counted" in tags["hairlab.budget"] and tags["hairlab.amp"] in (
        "fp32", "bf16")
    text = proc.stdout + proc.stderr
    assert "for 0.0001 min of training time (trainer.max_minutes; evaluations and checkpoints not counted)" in text
    assert "stopped at step" in text and "max_minutes" in text
    rows = [r for r in read_metrics(out) if "train/loss" in r]
    assert rows and rows[-1]["time/train_s"] >= 0.006 and rows[-1]["time/total_s"] >= rows[-1]["time/train_s"]


def test_lookahead_syncs_the_trained_weights_to_the_average(host: PluginHost) -> None:
    model = _net()
    avg = WeightAverage(model, EMAConfig(decay=0.5, lookahead=True))
    avg.update(model, 1, _never)
    _shift(model, 1.0)
    before = model[0].weight.clone()
    avg.update(model, 2, _never)
    assert torch.allclose(model[0].weight, before - 0.5)  # halfway back: slow + alpha (fast - slow)
    assert torch.equal(model[0].weight, avg.averaged.module[0].weight)
    assert torch.equal(model[1].running_mean, avg.averaged.module[1].running_mean)
    plain, ahead = engine(host, ema={"decay": 0.5, "every": 2}), engine(host, ema={"decay": 0.5, "every": 2,
                                                                                    "lookahead": True})
    plain.fit(), ahead.fit()
    assert not torch.equal(next(plain.model.parameters()), next(ahead.model.parameters()))  # training changed
    assert "Lookahead" in EMAConfig(lookahead=True).describe()


@pytest.mark.slow
def test_budget_under_torchrun_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    """Each rank reads its own clock; the engine takes the largest, so no rank waits on one that stopped."""
    from test_distributed import _torchrun

    from hairlab.tracking.base import read_metrics

    proc = _torchrun(tmp_path, "ddp", "trainer.epochs=null", "trainer.max_minutes=0.003", "trainer.log_every=1",
                     "tracking=local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = json.loads((tmp_path / "ddp" / "tags.json").read_text())
    assert tags["hairlab.stop_reason"] == "max_minutes" and tags["world_size"] == "2"
    rows = [r for r in read_metrics(tmp_path / "ddp") if "train/loss" in r]
    assert rows and rows[-1]["time/train_s"] >= 0.18
