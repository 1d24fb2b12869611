"""Optimizers (paper defaults, option checking) and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from hairlab.errors import HairlabError
from hairlab.plugin_manager import PluginHost
from hairlab.training.job import build_optimizer
from hairlab.training.schedules import lr_factor, make_scheduler, warmup_steps


def model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def opt_cfg(name: str, **overrides) -> dict:
    """An optimizer node as Hydra composes it from the schema: the name, then any overrides."""
    return {"name": name, **overrides}


def test_adam_has_the_papers_defaults(host: PluginHost) -> None:
    opt = build_optimizer(model(), opt_cfg("adam"), host)
    assert isinstance(opt, torch.optim.Adam)
    group = opt.param_groups[0]
    assert group["lr"] == 1e-3 and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8


def test_sgd_momentum_nesterov_and_no_decay_on_bn_and_bias(host: PluginHost) -> None:
    opt = build_optimizer(model(), opt_cfg("sgd"), host)
    assert isinstance(opt, torch.optim.SGD)
    decay, no_decay = opt.param_groups
    assert decay["nesterov"] and decay["momentum"] == 0.9 and decay["weight_decay"] == 5e-4
    assert [p.ndim for p in decay["params"]] == [4]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3
    everything = build_optimizer(model(), opt_cfg("sgd"), host, decay_norm_and_bias=True)
    assert len(everything.param_groups) == 1


def test_adamw_when_decoupled(host: PluginHost) -> None:
    assert isinstance(build_optimizer(model(), opt_cfg("adam", decoupled=True, weight_decay=0.01), host),
                      torch.optim.AdamW)


@pytest.mark.parametrize("key,value,match", [
    ("lr", "abc", r"optimizer\.lr='abc': expected float \(optimizer 'sgd' \(plugin optim, hairlab "),
    ("nesterov", "maybe", r"optimizer\.nesterov='maybe': expected bool"),
    ("lion_beta", 0.9, r"optimizer\.lion_beta is not an option of optimizer 'sgd' \(plugin optim"),
    ("lr", -1, r"optimizer\.lr=-1.0: expected a number > 0 \(optimizer 'sgd'"),
    ("momentum", -0.5, r"optimizer\.momentum=-0.5: expected a number >= 0"),
])
def test_bad_options_name_the_key_type_entry_and_plugin(host: PluginHost, key: str, value: object,
                                                         match: str) -> None:
    with pytest.raises(HairlabError, match=match) as info:
        build_optimizer(model(), opt_cfg("sgd", **{key: value}), host)
    assert "\n" not in str(info.value)


def test_numeric_strings_and_ints_are_accepted_as_floats(host: PluginHost) -> None:
    opt = build_optimizer(model(), opt_cfg("adam", lr="3e-4", eps=1), host)
    assert opt.param_groups[0]["lr"] == 3e-4 and opt.param_groups[0]["eps"] == 1.0


def test_schema_ranges_become_one_line(host: PluginHost) -> None:
    with pytest.raises(HairlabError, match=r"optimizer\.nesterov=true needs momentum > 0"):
        build_optimizer(model(), opt_cfg("sgd", momentum=0.0), host)


def test_unknown_optimizer_lists_alternatives(host: PluginHost) -> None:
    with pytest.raises(HairlabError, match="adam, sgd"):
        build_optimizer(model(), {"name": "no_such_optimizer"}, host)


def test_schedule_shapes() -> None:
    const = lr_factor("constant", 100, 0)
    assert const(0) == const(99) == 1.0
    warm = lr_factor("warmup", 100, 10)
    assert warm(0) == pytest.approx(1 / 11) and warm(9) == pytest.approx(10 / 11) and warm(50) == 1.0
    cos = lr_factor("cosine", 100, 0, min_lr_ratio=0.1)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)
    one = lr_factor("onecycle", 100, 30)
    assert one(0) == pytest.approx(1 / 25) and one(30) == pytest.approx(1.0)
    assert one(100) == pytest.approx(0.0)
    assert all(one(s) <= one(s + 1) for s in range(29)) and all(one(s) >= one(s + 1) for s in range(30, 99))
    with pytest.raises(HairlabError, match="constant, warmup, cosine, onecycle"):
        lr_factor("step", 10, 0)


def test_warmup_spec() -> None:
    assert warmup_steps(0, 1000, "cosine") == 0
    assert warmup_steps(0, 1000, "warmup") == 50 and warmup_steps(0, 1000, "onecycle") == 300
    assert warmup_steps(0.1, 1000, "cosine") == 100 and warmup_steps(20, 1000, "cosine") == 20
    assert warmup_steps(5000, 1000, "cosine") == 1000


def test_scheduler_drives_the_optimizer_and_resumes(host: PluginHost) -> None:
    m = model()
    opt = build_optimizer(m, opt_cfg("adam", lr=0.1), host)
    sched = make_scheduler(opt, {"schedule": "cosine"}, 10)
    lrs = []
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    opt2 = build_optimizer(m, opt_cfg("adam", lr=0.1), host)
    sched2 = make_scheduler(opt2, {"schedule": "cosine"}, 10)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    opt.step()
    sched.step()
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(
        math.pi * 0.6)))
    assert lrs[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.5)))
