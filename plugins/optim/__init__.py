"""Built-in optimizers: Adam (the paper's Algorithm 3) and SGD, both on ``torch.optim``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hairlab import hookimpl
from hairlab.registry import Entry


@dataclass
class AdamConfig:
    """Adam with the paper's defaults (alpha, beta1, beta2, epsilon)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    #: Decoupled weight decay (AdamW) instead of L2 folded into the gradient.
    decoupled: bool = False


@dataclass
class SGDConfig:
    """Mini-batch SGD with optional (Nesterov) momentum and weight decay."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    dampening: float = 0.0


def make_adam(params: Iterable[Any], **options: Any) -> Any:
    import torch

    cfg = AdamConfig(**options)
    cls = torch.optim.AdamW if cfg.decoupled else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def make_sgd(params: Iterable[Any], **options: Any) -> Any:
    import torch

    cfg = SGDConfig(**options)
    if cfg.nesterov and (cfg.momentum <= 0 or cfg.dampening != 0):
        raise ValueError("optimizer.nesterov=true needs optimizer.momentum>0 and optimizer.dampening=0")
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
