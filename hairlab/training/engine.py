"""The training loop: epochs of device-side batches, evaluation points and checkpoints.

Fast by default: channels_last tensors (1.3-2x on this CPU's depthwise and 1x1 convs),
batches that are already in memory on the device, and no host sync per step: losses and
correct counts stay on the device and are read once every ``log_every`` steps, which is also
where divergence is detected (with the exact step, since every loss is kept until then).

Curves have one point per epoch by default; ``eval_every`` adds a point every N optimizer steps
(train loss/accuracy since the previous point, then an evaluation), so a sweep that trains for a
fraction of an epoch on the full split still draws a curve (the paper's Figures 3 and 4).

Every figure is named for what it measured: an evaluation of split S logs ``S/loss`` and
``S/acc`` (``test/*`` when no validation split exists, never ``val/*``), and every training
figure covers one window, the steps since the previous curve point: the progress bar's running
loss, the logged ``train/loss`` and the summary line of that point are the same number.

At each curve point the engine keeps ``best.pt`` by the run's selection metric (``val/acc``
with a val split, else ``test/acc``) and asks the early stopper whether to end the run there.

With ``trainer.ema`` every evaluation (curve points, the final test, best.pt, the logged model)
uses the averaged weights (:mod:`hairlab.training.averaging`); with ``trainer.max_minutes`` the
run trains until its training-time budget ends and the schedule follows the budget's share used
(:mod:`hairlab.training.budget`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hairlab.errors import HairlabError, TrainingDiverged
from hairlab.training import budget as budget_module
from hairlab.training import checkpoint as ckpt
from hairlab.training import tta
from hairlab.training.averaging import WeightAverage
from hairlab.training.batch_init import init_from_first_batch
from hairlab.training.budget import Budget
from hairlab.training.config import EngineConfig
from hairlab.training.distributed import World, all_sum, wrap
from hairlab.training.early_stop import EarlyStopping, direction
from hairlab.training.progress import EpochProgress
from hairlab.training.runtime import amp_choice
from hairlab.training.schedules import make_scheduler

if TYPE_CHECKING:
    from hairlab.data import DataModule
    from hairlab.tracking.base import Tracker

#: Tags every training run carries: the metric that ranks it, and why it ended.
SELECTION_TAG = "hairlab.selection_metric"
STOP_TAG = "hairlab.stop_reason"


@dataclass
class Outcome:
    """How a fit ended, and its last metrics."""

    status: str  # finished | diverged
    epoch: int
    step: int
    metrics: dict[str, float]
    history: list[dict[str, float]]
    checkpoint: str | None = None
    diverged_step: int | None = None
    last_finite_loss: float | None = None
    stop_reason: str | None = None
    best_checkpoint: str | None = None


class Engine:
    """Trains ``model`` on a :class:`~hairlab.data.DataModule` and logs through a tracker."""

    def __init__(self, model: Any, optimizer: Any, data: DataModule, cfg: EngineConfig, tracker: Tracker, *,
                 device: Any, seed: int, checkpoint_dir: Path | None, progress: EpochProgress | None = None,
                 on_epoch_end: Callable[[int], None] | None = None, world: World | None = None) -> None:
        import torch

        self.torch = torch
        self.model, self.optimizer, self.data, self.cfg, self.tracker = model, optimizer, data, cfg, tracker
        self.device = device
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(device=device, memory_format=self.memory_format)
        self.world = world or World()
        self.train_model = wrap(self.model, self.world, device)  # DDP under torchrun, else the model
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.generator = torch.Generator().manual_seed(seed)
        #: autocast dtype (None = float32), its name (fp32|bf16|fp16) and why (tags, the job's first line)
        self.dtype, self.amp_name, self.amp_why = amp_choice(cfg.amp, device)
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress or EpochProgress(False)
        self.on_epoch_end = on_epoch_end
        self._takes_format = _accepts(data.train_batches, "memory_format")
        self._takes_epoch = _accepts(data.train_batches, "epoch")  # epoch-aware augmentation (alternating flip)
        self.step = 0
        self.epoch = 0  # before _epoch_len: an epoch-aware data module is asked for epoch 1's batches
        self.steps_per_epoch = self._epoch_len()
        if self.steps_per_epoch < 1:
            raise HairlabError("the training split is empty; check dataset.train_size and dataset.val_size")
        self.total_steps, self.ends_by = run_length(cfg.epochs, cfg.max_steps, self.steps_per_epoch,
                                                    cfg.max_minutes)
        #: False when only the time budget ends the run (its step count is unknown in advance).
        self.bounded = self.total_steps < UNBOUNDED
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch) if self.bounded else 0
        self.budget = Budget(cfg.max_minutes)
        self.scheduler = make_scheduler(optimizer, {"schedule": cfg.schedule, "warmup": cfg.warmup,
                                                    "min_lr_ratio": cfg.min_lr_ratio}, self.total_steps,
                                        self.progress_at if cfg.max_minutes is not None else None)
        self.averager = WeightAverage(self.model, cfg.averaging) if cfg.averaging is not None else None
        self.eval_split = self._eval_split()
        #: The metric that ranks this run (and picks best.pt): the evaluated split's accuracy.
        self.selection_metric = f"{self.eval_split}/acc" if self.eval_split else None
        self.stopper = self._stopper()
        self.best: dict[str, Any] | None = None  # metric, value, step of best.pt
        self.stop_reason: str | None = None
        self.history: list[dict[str, float]] = []
        self._finite_loss: float | None = None
        self._eval_s = 0.0

    # -- setup helpers ---------------------------------------------------------------------------
    def progress_at(self, step: int) -> float:
        """The run's progress after ``step`` steps, in [0, 1]: the larger of the time budget's share used
        and the share of the step limit, so the schedule ends where the run ends, whichever ends it."""
        steps = min(step / self.total_steps, 1.0) if self.bounded else 0.0
        return max(self.budget.fraction(), steps)

    @property
    def eval_model(self) -> Any:
        """The model every evaluation uses: the weight average under ``trainer.ema``, else the model."""
        return self.averager.model(self.model) if self.averager is not None else self.model

    def _epoch_len(self) -> int:
        """Batches per training epoch, as the data module will yield them."""
        try:
            return len(self._batches("train", self.cfg.batch_size, train=True))
        except TypeError:  # an iterable without len(): assume a lone last example is dropped
            full, rest = divmod(self.data.num_examples("train"), self.cfg.batch_size)
            return full + (1 if rest > 1 else 0)

    def _eval_split(self) -> str | None:
        split = self.cfg.eval_split
        if split == "none":
            return None
        if split == "auto":
            for candidate in ("val", "test"):
                if self.data.num_examples(candidate) > 0:
                    return candidate
            return None
        if split not in ("val", "test"):
            raise HairlabError(f"trainer.eval_split={split!r} is unknown; use auto, val, test or none")
        if self.data.num_examples(split) == 0:
            raise HairlabError(f"trainer.eval_split={split} but the dataset has no {split} split; "
                               "set dataset.val_size or trainer.eval_split=test")
        return split

    def point_metrics(self) -> list[str]:
        """The metrics every curve point logs (what early stopping can watch)."""
        names = ["train/loss", "train/acc", "lr"]
        if self.eval_split is not None:
            names += [f"{self.eval_split}/loss", f"{self.eval_split}/acc"]
        return names

    def _stopper(self) -> EarlyStopping | None:
        """The early stopper of ``trainer.early_stop``; its metric must be one each point logs."""
        es = self.cfg.stopping
        if es is None:
            return None
        metric = es.metric or self.selection_metric
        known = self.point_metrics()
        if metric is None:
            raise HairlabError("trainer.early_stop needs an evaluation to watch, and trainer.eval_split=none "
                               "evaluates nothing; set trainer.eval_split=auto or trainer.early_stop.metric="
                               "train/loss with mode=min")
        if metric not in known:
            raise HairlabError(f"trainer.early_stop.metric={metric} is not logged at this run's evaluation "
                               f"points (they log {', '.join(known)}); pick one of those, or null for the "
                               "selection metric")
        return EarlyStopping(metric, direction(metric, es.mode), es.patience, es.min_delta)

    def _batches(self, split: str, batch_size: int, train: bool) -> Any:
        kw: dict[str, Any] = {"device": self.device}
        if self._takes_format:
            kw["memory_format"] = self.memory_format
        if train:
            if self._takes_epoch:
                kw["epoch"] = max(self.epoch, 1)
            return self.data.train_batches(batch_size, generator=self.generator, **kw)
        return self.data.eval_batches(split, batch_size, **kw)

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": ckpt.rng_state(self.generator), "history": self.history,
            "total_steps": self.total_steps, "stop_reason": self.stop_reason,
            "ema": self.averager.state_dict() if self.averager is not None else None,
            "budget": self.budget.state(),
        }

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint written at the end of an epoch."""
        state = ckpt.load(path)
        if "best" in state and "optimizer" not in state:
            raise HairlabError(f"checkpoint {path} is a best checkpoint (weights only); resume from "
                               f"{ckpt.LAST} in the same directory")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise HairlabError(f"checkpoint {path} does not fit this model/optimizer ({first}); "
                               "resume with the same model and optimizer config") from None
        if self.averager is not None:
            if not state.get("ema"):
                raise HairlabError(f"checkpoint {path} holds no weight average; resume with the run's own "
                                   "trainer.ema (null here)")
            self.averager.load_state_dict(state["ema"])
        self.budget.restore(state.get("budget"))
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"], self.generator)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = [dict(h) for h in state.get("history", [])]
        self.model.to(device=self.device, memory_format=self.memory_format)
        for row in self.history:  # the new run's record shows the whole curve
            self.tracker.log_metrics({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
            self._judge(row, save=False)  # best value and early-stop count as the uninterrupted run had them
        self.stop_reason = state.get("stop_reason") or self.stop_reason
        self._adopt_best(path.parent / ckpt.BEST)

    def _adopt_best(self, found: Path) -> None:
        """A resumed run keeps the killed run's best.pt when it lives in another directory."""
        if not self._keeps("best") or self.checkpoint_dir is None or not self.world.main:
            return
        target = self.checkpoint_dir / ckpt.BEST
        if found.is_file() and not target.is_file():
            import shutil

            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, target)

    def _keeps(self, which: str) -> bool:
        return self.cfg.checkpoint in (which, "both")

    def _save(self) -> str | None:
        if not self._keeps("last") or self.checkpoint_dir is None or not self.world.main:
            return None
        return str(ckpt.save(self.checkpoint_dir / ckpt.LAST, self.state()))

    def _save_best(self) -> None:
        """The weights of the best point so far, with which metric, value and step made them best."""
        if not self._keeps("best") or self.checkpoint_dir is None or not self.world.main:
            return
        ckpt.save(self.checkpoint_dir / ckpt.BEST, {"epoch": self.epoch, "step": self.step,
                                                    "model": self.eval_model.state_dict(),  # the averaged ones
                                                    "best": dict(self.best or {})})

    @property
    def best_path(self) -> str | None:
        if self.best is None or not self._keeps("best") or self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / ckpt.BEST
        return str(path) if path.is_file() else None

    def _judge(self, metrics: dict[str, float], *, save: bool = True) -> None:
        """A curve point's verdict: a new best (best.pt), and whether early stopping ends the run here."""
        step = int(metrics.get("step", self.step))
        chosen = metrics.get(self.selection_metric or "")
        if chosen is not None and math.isfinite(chosen) and (self.best is None or chosen > self.best["value"]):
            self.best = {"metric": self.selection_metric, "value": float(chosen), "step": step}
            if save:
                self._save_best()
        if self.stopper is not None and self.stopper.metric in metrics and self.stop_reason is None:
            stop = self.stopper.update(float(metrics[self.stopper.metric]), step)
            if stop and step < self.total_steps:  # at the last step the run ends as planned anyway
                self.stop_reason = self.stopper.reason

    # -- the loop -----------------------------------------------------------------------------------
    def fit(self) -> Outcome:
        last: str | None = None
        metrics: dict[str, float] = dict(self.history[-1]) if self.history else {}
        if self.selection_metric is not None:
            self.tracker.set_tags({SELECTION_TAG: self.selection_metric})
        plan = getattr(self.progress, "plan", None)  # the job's ETA, where the progress display has one
        if callable(plan) and self.bounded:
            plan(self.total_steps, self.step)
        elif callable(getattr(self.progress, "plan_time", None)) and self.budget.limit_s is not None:
            limit = self.budget.limit_s
            self.progress.plan_time(lambda: limit - self.budget.train.elapsed())  # training time left
        self.budget.total.start()
        if self.step == 0:  # fresh runs only: a resumed run's weights come from its checkpoint
            init_from_first_batch(self.model, lambda: self._batches("train", self.cfg.batch_size, train=True),
                                  self.generator)  # modules' init_from_batch hooks (docs/plugins.md)
        try:
            while self.step < self.total_steps and self.stop_reason is None:
                self.epoch += 1
                metrics = self._epoch()
                last = self._save() or last
                if self.on_epoch_end is not None:
                    self.on_epoch_end(self.epoch)
            if self.stop_reason is not None:
                of = f" of {self.total_steps}" if self.bounded else ""
                self.progress.summary(f"stopped at step {self.step}{of}: {self.stop_reason} "
                                      f"({self.budget.train.elapsed():.1f} s of training)")
            if self.cfg.final_test and self.eval_split == "val" and self.data.num_examples("test"):
                loss, acc = self.evaluate("test")
                final = {"test/loss": loss, "test/acc": acc, "time/total_s": self.budget.total.elapsed()}
                metrics = {**metrics, **final}
                self.tracker.log_metrics(final, step=self.step)
                self._check_eval("test/loss", loss)
        except TrainingDiverged as exc:
            self.progress.stop()
            tags = {"diverged": "true", "diverged_step": str(exc.step),
                    "last_finite_loss": str(exc.last_finite_loss), STOP_TAG: "diverged"}
            self.tracker.set_tags(tags)
            self.progress.summary(f"[red]diverged[/red] at step {exc.step} "
                                  f"(last finite loss {exc.last_finite_loss})")
            return Outcome("diverged", self.epoch, exc.step, metrics, self.history, last,
                           exc.step, exc.last_finite_loss, "diverged", self.best_path)
        reason = self.stop_reason or self.ends_by
        self.tracker.set_tags({STOP_TAG: reason})
        return Outcome("finished", self.epoch, self.step, metrics, self.history, last,
                       stop_reason=reason, best_checkpoint=self.best_path)

    def _epoch(self) -> dict[str, float]:
        """One pass over the training split (or what is left of the step budget), then its point."""
        torch = self.torch
        cfg = self.cfg
        self.train_model.train()
        budget = min(self.steps_per_epoch, self.total_steps - self.step)
        self.budget.train.start()  # the budget's clock: training only, evaluations excluded
        batches = self._batches("train", cfg.batch_size, train=True)
        losses: list[Any] = []
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        loss_sum, seen, done, last_finite = 0.0, 0, 0, self._finite_loss
        # the epoch's running totals when the current curve window began (the whole epoch
        # unless eval_every is set); a window's metrics are the differences. ``since`` is the
        # global step the window starts after, for the printed "(steps a-b)"
        window = {"loss": 0.0, "steps": 0, "correct": 0, "seen": 0, "start": time.perf_counter(),
                  "since": self.step}
        self.progress.start(self.epoch, self.epochs, budget)
        start = time.perf_counter()
        self._eval_s = 0.0  # mid-epoch evaluation time, kept out of the training rate
        for x, y in itertools.islice(batches, budget):  # never assemble a batch that will not run
            full = y.shape[0]
            if full < self.world.size:  # a last batch too small to give every rank an example
                continue
            x, y = self.world.shard(x.contiguous(memory_format=self.memory_format), y)
            out, loss = self._step(x, y)
            losses.append(loss.detach())
            correct += (out.detach().argmax(1) == y).sum()
            seen += full
            done += 1
            self.step += 1
            if self.averager is not None:
                self.averager.update(self.model, self.step, self.progress_at)
            out_of_time = self.budget.spent()
            point = (cfg.eval_every is not None and self.step % cfg.eval_every == 0 and done < budget
                     and not out_of_time)
            if done % cfg.log_every == 0 or done == budget or point:
                loss_sum, last_finite = self._drain(losses, loss_sum, last_finite, self.step - len(losses))
                losses = []
                elapsed = time.perf_counter() - start - self._eval_s
                hits = self._count(correct)
                # the current window's running means: at a point, exactly what it logs as train/*
                self.progress.update(done, (loss_sum - window["loss"]) / max(done - window["steps"], 1),
                                     (hits - window["correct"]) / max(seen - window["seen"], 1),
                                     seen / elapsed)
            if point:
                self._point(window, loss_sum, done, hits, seen)
                if self.stop_reason is not None:  # early stop at this point: the epoch ends here
                    self.budget.train.stop()
                    self.progress.stop()
                    self._finite_loss = last_finite
                    return self.history[-1]
            if out_of_time:  # the budget ended: this step closes the epoch, whose point follows
                self.stop_reason = budget_module.STOP_REASON
                break
        if losses:
            loss_sum, last_finite = self._drain(losses, loss_sum, last_finite, self.step - len(losses))
        self.budget.train.stop()
        train_s = time.perf_counter() - start - self._eval_s
        self.progress.stop()
        self._finite_loss = last_finite
        since = int(window["since"])
        metrics = {
            "epoch": float(self.epoch),
            **self._window_metrics(window, loss_sum, done, self._count(correct), seen),
            "throughput/img_s": seen / train_s if train_s > 0 else 0.0,
        }
        return self._end_epoch(metrics, start, since)

    def _step(self, x: Any, y: Any) -> tuple[Any, Any]:
        """One optimizer step on a batch (autocast, loss scaling, gradient clipping, schedule)."""
        torch, cfg, model, opt = self.torch, self.cfg, self.train_model, self.optimizer
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = model(x)
            loss = self.criterion(out, y)
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
        if self.budget.limit_s is not None:
            self.budget.tick(self._agree if self.world.size > 1 else None)  # what the schedule reads next
        self.scheduler.step()
        return out, loss

    def _evaluate_into(self, metrics: dict[str, float]) -> None:
        """The evaluation of a curve point, under the evaluated split's own name."""
        if self.eval_split is not None:
            split = self.eval_split
            metrics[f"{split}/loss"], metrics[f"{split}/acc"] = self.evaluate(split)

    def _figures(self, metrics: dict[str, float], since: int) -> str:
        """A point's train and evaluation figures as printed, each saying what it covers."""
        text = (f"train loss {metrics['train/loss']:.4f} acc {metrics['train/acc']:.4f} "
                f"(steps {since + 1}-{self.step})")
        if self.eval_split is not None:
            split = self.eval_split
            text += f"  {split} loss {metrics[f'{split}/loss']:.4f} acc {metrics[f'{split}/acc']:.4f}"
        return text

    def _end_epoch(self, metrics: dict[str, float], start: float, since: int) -> dict[str, float]:
        """The epoch's evaluation, its logged point, the divergence check, its verdict and summary line."""
        self._evaluate_into(metrics)
        metrics["time/epoch_s"] = time.perf_counter() - start
        metrics.update(self._clocks())
        self.tracker.log_metrics(metrics, step=self.step)
        if self.eval_split is not None:
            self._check_eval(f"{self.eval_split}/loss", metrics[f"{self.eval_split}/loss"])
        metrics["step"] = float(self.step)
        self.history.append(metrics)
        self._judge(metrics)
        of = f"/{self.epochs}" if self.bounded else ""
        self.progress.summary(
            f"epoch {self.epoch}{of}  step {self.step}  {self._figures(metrics, since)}  "
            f"{metrics['throughput/img_s']:,.0f} img/s  {metrics['time/epoch_s']:.1f} s")
        return metrics

    def _window_metrics(self, window: dict[str, Any], loss_sum: float, steps: int, correct: int,
                        seen: int) -> dict[str, float]:
        """Train loss/accuracy since the window began (the epoch's running totals); starts the next."""
        metrics = {
            "train/loss": (loss_sum - window["loss"]) / max(steps - window["steps"], 1),
            "train/acc": (correct - window["correct"]) / max(seen - window["seen"], 1),
            "lr": float(self.scheduler.get_last_lr()[0]),
        }
        window.update(loss=loss_sum, steps=steps, correct=correct, seen=seen, start=time.perf_counter(),
                      since=self.step)
        return metrics

    def _point(self, window: dict[str, Any], loss_sum: float, steps: int, correct: int, seen: int) -> None:
        """A mid-epoch curve point (``eval_every``): the window's train metrics and an evaluation."""
        train_s = time.perf_counter() - window["start"]
        images = seen - window["seen"]
        since = int(window["since"])
        metrics = {"epoch": self.step / self.steps_per_epoch,
                   **self._window_metrics(window, loss_sum, steps, correct, seen),
                   "throughput/img_s": images / train_s if train_s > 0 else 0.0}
        began = time.perf_counter()
        self.budget.train.stop()
        self._evaluate_into(metrics)
        metrics.update(self._clocks())
        self.budget.train.start()
        self.tracker.log_metrics(metrics, step=self.step)
        row = {**metrics, "step": float(self.step)}
        self.history.append(row)
        if self.eval_split is not None:
            self._check_eval(f"{self.eval_split}/loss", metrics[f"{self.eval_split}/loss"])
        self._judge(row)
        of = f"/{self.total_steps}" if self.bounded else ""
        self.progress.summary(f"step {self.step}{of}  {self._figures(metrics, since)}")
        window["start"] = time.perf_counter()  # evaluation time is not training time
        self._eval_s += window["start"] - began

    def _agree(self, seconds: float) -> float:
        """The largest of every rank's training seconds (one scalar all-reduce per step, budget runs only)."""
        torch = self.torch
        import torch.distributed as dist

        value = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return float(value.item())

    def _clocks(self) -> dict[str, float]:
        """Training seconds so far (the budget's clock) and the fit's wall seconds with evaluations."""
        return {"time/train_s": self.budget.train.elapsed(), "time/total_s": self.budget.total.elapsed()}

    def _count(self, correct: Any) -> int:
        """Correct predictions so far, over every rank."""
        return int(all_sum(correct.clone(), self.world))

    def _drain(self, losses: list[Any], loss_sum: float, last_finite: float | None, first_step: int
               ) -> tuple[float, float | None]:
        """Read the pending losses from the device (one sync); raise at the first non-finite one.

        Under torchrun each value is the mean over the ranks, so every rank sees the same losses
        and stops at the same step when one is non-finite.
        """
        import torch

        stacked = torch.stack(losses).float()
        values = (all_sum(stacked, self.world) / self.world.size).tolist()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise TrainingDiverged(first_step + i + 1, last_finite)
            last_finite = value
        return loss_sum + sum(values), last_finite

    def _check_eval(self, metric: str, value: float) -> None:
        """Divergence means any non-finite loss: an evaluation loss of NaN/inf ends the fit
        as diverged too (after it was logged), so such a run is never ranked as a result."""
        if not math.isfinite(value):
            self.tracker.set_tags({"diverged_metric": metric})
            raise TrainingDiverged(self.step, self._finite_loss)

    def evaluate(self, split: str) -> tuple[float, float]:
        """Mean cross-entropy (without label smoothing) and accuracy on ``split``, by :attr:`eval_model`."""
        torch = self.torch
        model = self.eval_model
        model.eval()
        batch = self.cfg.eval_batch_size or 2 * self.cfg.batch_size
        # loss sum, correct count, example count; summed over the ranks, each of which
        # evaluates its slice of every batch
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype,
                                                    enabled=self.dtype is not None):
            for x, y in self._batches(split, batch, train=False):
                x, y = self.world.shard(x.contiguous(memory_format=self.memory_format), y)
                if y.shape[0] == 0:
                    continue
                logits = tta.predict(model, x, self.cfg.tta)  # trainer.tta (hairlab/training/tta.py)
                totals[0] += torch.nn.functional.cross_entropy(logits, y, reduction="sum")
                totals[1] += (logits.argmax(1) == y).sum()
                totals[2] += y.shape[0]
        self.model.train()
        total_loss, correct, n = all_sum(totals, self.world).tolist()
        if n == 0:
            return float("nan"), float("nan")
        return total_loss / n, int(correct) / n


#: The step count of a run only its time budget ends.
UNBOUNDED = 2**62


def run_length(epochs: int | None, max_steps: int | None, steps_per_epoch: int,
               max_minutes: float | None = None) -> tuple[int, str]:
    """Optimizer steps in all, and which setting decides them (the run's normal stop reason).

    Lightning's rule: ``max_steps`` alone decides; ``epochs`` alone decides (1 when neither is
    given); with both, whichever ends first. A time budget alone leaves the steps unbounded
    (:data:`UNBOUNDED`); with either of the others it may still end the run first.
    """
    if max_minutes is not None and epochs is None and max_steps is None:
        return UNBOUNDED, budget_module.STOP_REASON
    if max_steps is None:
        return (epochs or 1) * steps_per_epoch, "epochs"
    if epochs is None or max_steps <= epochs * steps_per_epoch:
        return max_steps, "max_steps"
    return epochs * steps_per_epoch, "epochs"


def _accepts(fn: Any, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
