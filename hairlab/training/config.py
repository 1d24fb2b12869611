"""The ``trainer`` config group's schema: every training-engine option, its type, default and help.

Stored in Hydra's ConfigStore as ``trainer/default`` (there is no YAML); ranges are checked in
``__post_init__`` so ``trainer.grad_clip=-1`` is refused before any run exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Optional, Union

from hairlab.contract.schema import opt
from hairlab.training.averaging import EMAConfig
from hairlab.training.early_stop import EarlyStopConfig
from hairlab.training.tta import resolve as resolve_tta

SCHEDULES = ("constant", "warmup", "cosine", "onecycle")
EVAL_SPLITS = ("auto", "val", "test", "none")
CHECKPOINTS = ("last", "best", "both", "none")
AMP = ("auto", "true", "on", "1", "false", "off", "none", "0", "bf16", "bfloat16", "fp16", "float16")


@dataclass
class EngineConfig:
    """How a model is trained: length, batches, device, precision, schedule, evaluation, checkpoints."""

    epochs: Optional[int] = opt(None, "passes over the training split; null = 1, or as many as max_steps needs "
                                      "when max_steps is set")
    max_steps: Optional[int] = opt(None, "optimizer steps in all; with epochs set too, whichever ends first; "
                                         "null = epochs decide")
    batch_size: int = opt(128, "training batch size (the global batch under torchrun)")
    eval_batch_size: Optional[int] = opt(None, "evaluation batch size; null = 2 x batch_size")
    device: str = opt("auto", "auto = cuda, then mps, then cpu; or cpu, cuda, cuda:N, mps")
    channels_last: bool = opt(True, "NHWC tensors: 1.3-2x faster depthwise/1x1 convs on CPU (oneDNN)")
    amp: Union[bool, str] = opt("auto", "mixed precision: auto = on for CUDA (bf16, else fp16), on CPU what a "
                                        "cached probe measured faster (fp32 or bf16); true, false, bf16, fp16")
    compile: bool = opt(False, "torch.compile the training model (costs a compilation at the start)")
    threads: Optional[int] = opt(None, "torch intra-op threads; null = one per core (shared among joblib jobs)")
    deterministic: bool = opt(False, "strict deterministic kernels (CPU results are reproducible without it)")
    label_smoothing: float = opt(0.0, "label smoothing of the training loss, in [0, 1)")
    tta_flip: bool = opt(False, "the older name of tta=flip: true = flip")
    tta: Literal["none", "flip", "flip_translate"] = opt(
        "none", "test-time augmentation of every evaluation: none, flip (image and mirror, 2 passes) or "
                "flip_translate (airbench: mirror and 1-pixel translations, 6 passes)")
    grad_clip: Optional[float] = opt(None, "max global gradient norm, > 0; null = no clipping")
    schedule: Literal["constant", "warmup", "cosine", "onecycle"] = opt(
        "constant", "learning-rate schedule: constant, warmup, cosine or onecycle")
    warmup: float = opt(0.0, "warmup length: steps, or a fraction (< 1) of the run; 0 = the schedule's default")
    min_lr_ratio: float = opt(0.0, "cosine/onecycle end at this fraction of the base rate")
    decay_norm_and_bias: bool = opt(False, "weight decay on BN parameters and biases too")
    bias_lr_scale: float = opt(1.0, "learning-rate multiplier of every bias (BN shifts included), >= 0; the "
                                    "schedule scales it with the rest")
    norm_weight_lr_scale: float = opt(1.0, "learning-rate multiplier of normalization layers' weights (BN "
                                           "scales), >= 0; 0 freezes them")
    max_minutes: Optional[float] = opt(None, "training-time budget in minutes (evaluations not counted); the "
                                             "schedule runs on the budget's share used; with epochs/max_steps "
                                             "too, whichever ends first; null = off")
    ema: Union[bool, EMAConfig, None] = opt(
        None, "evaluate an exponential moving average of the weights: {decay, half_life, every, warmup, "
              "buffers}; true = the defaults; null = off")
    eval_split: Literal["auto", "val", "test", "none"] = opt(
        "auto", "auto = val if the dataset carves one, else test; val, test or none")
    final_test: bool = opt(True, "after training with a val split, also evaluate on test once")
    log_every: int = opt(20, "steps between progress updates (each reads the losses back once)")
    eval_every: Optional[int] = opt(None, "also a curve point (train metrics + evaluation) every N steps; "
                                          "null = per epoch")
    progress: bool = opt(True, "rich progress bar and one summary line per epoch")
    checkpoint: Union[bool, str] = opt(
        "last", "last (last.pt after every epoch, for resume), best (best.pt by the selection metric), both or "
                "none; true = last, false = none")
    checkpoint_dir: Optional[str] = opt(None, "where checkpoints go; null = <job dir>/checkpoints")
    resume: Union[str, bool, None] = opt(None, "a killed run's job dir or checkpoint file; auto = this job's own")
    resume_mismatch: Literal["refuse", "allow"] = opt(
        "refuse", "continue a trainer.resume checkpoint whose job key differs (another lr, optimizer, code "
                  "version): refuse (one-line error naming the keys) or allow")
    early_stop: Union[bool, EarlyStopConfig, None] = opt(
        None, "stop when a metric stops improving: {metric, mode, patience, min_delta}; true = the defaults; "
              "null = off")

    def __post_init__(self) -> None:
        if str(self.amp).lower() not in AMP:
            raise ValueError(f"amp={self.amp!r}: expected auto, true, false, bf16 or fp16")
        for key in ("epochs", "max_steps", "eval_batch_size", "eval_every", "threads"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key}={value}: expected an integer >= 1 or null")
        for key in ("bias_lr_scale", "norm_weight_lr_scale"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}={getattr(self, key)}: expected a number >= 0")
        if self.max_minutes is not None:
            if not self.max_minutes > 0:
                raise ValueError(f"max_minutes={self.max_minutes}: expected a number of minutes > 0 or null")
            if self.warmup >= 1:
                raise ValueError(f"warmup={self.warmup}: with max_minutes the warmup is a fraction (< 1) of the "
                                 "budget, e.g. trainer.warmup=0.1")
        for key in ("batch_size", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: expected an integer >= 1")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip={self.grad_clip}: expected a number > 0 or null")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing}: expected a number in [0, 1)")
        self.tta = resolve_tta(self.tta, self.tta_flip)  # type: ignore[assignment]
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup}: expected a number >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio}: expected a number in [0, 1]")
        self.checkpoint = _checkpoint_mode(self.checkpoint)
        if self.early_stop is True:
            self.early_stop = EarlyStopConfig()
        elif self.early_stop is False:
            self.early_stop = None
        elif isinstance(self.early_stop, Mapping):  # built directly rather than through the config check
            self.early_stop = EarlyStopConfig(**self.early_stop)
        if self.ema is True:
            self.ema = EMAConfig()
        elif self.ema is False:
            self.ema = None
        elif isinstance(self.ema, Mapping):
            self.ema = EMAConfig(**self.ema)

    @property
    def stopping(self) -> EarlyStopConfig | None:
        """``early_stop`` as its schema object, or None when off."""
        return self.early_stop if isinstance(self.early_stop, EarlyStopConfig) else None

    @property
    def averaging(self) -> EMAConfig | None:
        """``ema`` as its schema object, or None when off."""
        return self.ema if isinstance(self.ema, EMAConfig) else None


def _checkpoint_mode(value: Union[bool, str]) -> str:
    """``trainer.checkpoint`` as one of :data:`CHECKPOINTS` (the old booleans still mean last / none)."""
    text = str(value).lower()
    mode = {"true": "last", "false": "none"}.get(text, text)
    if mode not in CHECKPOINTS:
        raise ValueError(f"checkpoint={value!r}: expected last, best, both or none (true = last, false = none)")
    return mode
