"""Built-in optimizers: Adam (the paper's Algorithm 3) and SGD, both on ``torch.optim``.

Each schema is the optimizer's only definition of its options (types, defaults, ranges, help);
hairlab stores it in Hydra's ConfigStore as ``optimizer/<name>``, so there is no YAML.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hairlab import hookimpl
from hairlab.contract.schema import opt
from hairlab.registry import Entry


@dataclass
class AdamConfig:
    """Adam with the paper's defaults (Algorithm 3: alpha, beta1, beta2, epsilon)."""

    lr: float = opt(1e-3, "step size alpha, > 0")
    beta1: float = opt(0.9, "decay of the first-moment estimate, in [0, 1)")
    beta2: float = opt(0.999, "decay of the second-moment estimate, in [0, 1)")
    eps: float = opt(1e-8, "added to the denominator for numerical stability, > 0")
    weight_decay: float = opt(0.0, "weight decay, >= 0 (BN parameters and biases excluded unless "
                                   "trainer.decay_norm_and_bias)")
    decoupled: bool = opt(False, "decoupled weight decay (AdamW) instead of L2 folded into the gradient")

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _positive("eps", self.eps)
        _unit("beta1", self.beta1)
        _unit("beta2", self.beta2)
        _non_negative("weight_decay", self.weight_decay)


@dataclass
class SGDConfig:
    """Mini-batch SGD with optional (Nesterov) momentum and weight decay."""

    lr: float = opt(0.1, "learning rate, > 0")
    momentum: float = opt(0.9, "momentum factor, >= 0")
    nesterov: bool = opt(True, "Nesterov momentum (needs momentum > 0 and dampening 0)")
    weight_decay: float = opt(5e-4, "weight decay, >= 0 (BN parameters and biases excluded unless "
                                    "trainer.decay_norm_and_bias)")
    dampening: float = opt(0.0, "dampening of the momentum, >= 0")

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        for key in ("momentum", "weight_decay", "dampening"):
            _non_negative(key, getattr(self, key))
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=true needs momentum > 0 and dampening=0 (or set optimizer.nesterov=false)")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{key}={value}: expected a number > 0")


def _non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{key}={value}: expected a number >= 0")


def _unit(key: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{key}={value}: expected a number in [0, 1)")


def make_adam(params: Iterable[Any], **options: Any) -> Any:
    import torch

    cfg = AdamConfig(**options)
    cls = torch.optim.AdamW if cfg.decoupled else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def make_sgd(params: Iterable[Any], **options: Any) -> Any:
    import torch

    cfg = SGDConfig(**options)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay, dampening=cfg.dampening,
    )


@hookimpl
def hairlab_optimizers() -> list[Entry]:
    return [
        Entry("adam", make_adam, "Adam (Kingma & Ba); paper defaults lr=1e-3, betas=(0.9, 0.999), eps=1e-8.",
              AdamConfig),
        Entry("sgd", make_sgd, "SGD with momentum, optional Nesterov and weight decay.", SGDConfig),
    ]
