"""The job key: what changes it, what does not, and the checkpoint's refusal to mix keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hairlab.errors import HairlabError
from hairlab.tracking import identity

BASE = {"seed": 0, "optimizer": {"name": "adam", "lr": 0.001}, "trainer": {"epochs": 1, "progress": True,
        "threads": None, "log_every": 20, "checkpoint": True, "checkpoint_dir": None, "resume": None,
        "resume_mismatch": "refuse", "device": "cpu"}, "tracking": {"backend": "mlflow", "resume": False}}


def key(**changes: object) -> str:
    cfg = OmegaConf.create(BASE)
    for k, v in changes.items():
        OmegaConf.update(cfg, k.replace("__", "."), v)
    return identity.job_key(cfg, version="v")


def test_results_change_the_key() -> None:
    assert key(optimizer__lr=0.01) != key()
    assert key(optimizer__name="sgd") != key()
    assert key(trainer__device="cuda") != key()  # other numbers on another device
    assert key(seed=1) != key()


@pytest.mark.parametrize("change", ["trainer__progress", "trainer__threads", "trainer__log_every", "trainer__checkpoint",
                                    "trainer__checkpoint_dir", "trainer__resume", "trainer__resume_mismatch",
                                    "tracking__resume", "tracking__backend"])
def test_excluded_keys_do_not(change: str) -> None:
    assert key(**{change: "something else"}) == key()


def test_code_version_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = OmegaConf.create(BASE)
    assert identity.job_key(cfg, version="a") != identity.job_key(cfg, version="b")
    monkeypatch.setenv(identity.ENV_CODE_VERSION, "pinned")
    assert identity.code_version() == "pinned"
    assert len(identity.job_key(cfg)) == 64


def test_checkpoint_of_another_key_is_refused_by_name(tmp_path: Path) -> None:
    from hairlab.training import checkpoint as ckpt

    old = OmegaConf.create(BASE)
    ckpt.identify(identity.job_key(old, version="v"), "v", identity.result_params(old))
    path = ckpt.save(tmp_path / "last.pt", {"epoch": 1})
    new = OmegaConf.create(BASE)
    new.optimizer.lr = 0.5
    params = identity.result_params(new)
    with pytest.raises(HairlabError, match=r"optimizer\.lr \(0\.001 -> 0\.5\).*resume_mismatch=allow"):
        ckpt.check_identity(path, identity.job_key(new, version="v"), params)
    ckpt.check_identity(path, identity.job_key(new, version="v"), params, allow=True)
    ckpt.check_identity(path, identity.job_key(old, version="v"), identity.result_params(old))
