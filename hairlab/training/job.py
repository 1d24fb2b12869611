"""``task=train``: build data, model and optimizer from the config, train, report.

The runner (:mod:`hairlab.runner`) owns the tracker and closes it with the run's status;
this job only logs metrics, tags and data facts through it. A diverged run is a result, not
a crash: it returns ``status: diverged`` with the step and last finite loss, and tags the
run ``diverged=true`` so a sweep can report it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hairlab.errors import HairlabError

if TYPE_CHECKING:
    from hairlab.plugin_manager import PluginHost


def job_dir(tracker: Any) -> Path:
    """The Hydra job's output directory (or the tracker's, outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        directory = getattr(tracker, "directory", None)
        if directory is None:
            raise HairlabError("no job directory: run through `hairlab run` or set trainer.checkpoint_dir") \
                from None
        return Path(directory)


def parameter_roles(model: Any) -> list[tuple[Any, str]]:
    """Each trainable parameter once, in ``model.parameters()`` order, with its role: ``bias`` (any
    module's bias, BN's shift included), ``norm`` (a normalization layer's scale), ``vector``
    (another 1-d parameter) or ``weight`` (everything else: conv and dense kernels)."""
    import torch

    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    role: dict[int, str] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                role[id(p)] = "bias"
            elif isinstance(module, norms):
                role[id(p)] = "norm"
    return [(p, role.get(id(p), "vector" if p.ndim <= 1 else "weight"))
            for p in model.parameters() if p.requires_grad]


def build_optimizer(model: Any, optimizer_cfg: Any, host: PluginHost, decay_norm_and_bias: bool = False, *,
                    bias_lr_scale: float = 1.0, norm_weight_lr_scale: float = 1.0) -> Any:
    """The configured optimizer over ``model``'s parameters, built through the contract.

    Unless ``decay_norm_and_bias``, BN parameters and biases (1-d tensors) get no weight decay:
    decaying BN's scale fights the normalization and only slows training. Biases train at
    ``bias_lr_scale`` and normalization scales at ``norm_weight_lr_scale`` times the optimizer's
    rate (airbench trains BN biases 64x faster): each group's ``lr`` is scaled once here, after the
    factory set it, so LambdaLR (which schedules every group from its own initial rate) keeps the
    ratio at every step. Parameters with the same settings share one group (the defaults give two).
    """
    from hairlab import contract

    scale = {"bias": float(bias_lr_scale), "norm": float(norm_weight_lr_scale)}
    by_setting: dict[tuple[bool, float], list[Any]] = {}  # (decays, lr scale) -> parameters, first seen first
    for p, role in parameter_roles(model):
        by_setting.setdefault((decay_norm_and_bias or role == "weight", scale.get(role, 1.0)), []).append(p)
    groups = [{"params": params, "lr_scale": lr_scale, **({} if decays else {"weight_decay": 0.0})}
              for (decays, lr_scale), params in by_setting.items()]
    optimizer = contract.build(host, "optimizers", optimizer_cfg, groups, where="optimizer")
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
    return optimizer


def build_data(dataset_cfg: Any, host: PluginHost) -> Any:
    """The configured :class:`~hairlab.data.DataModule`, built through the contract."""
    from hairlab import contract

    return contract.build(host, "datasets", dataset_cfg, where="dataset")


def hardware_metrics(model: Any, input_shape: tuple[int, int, int], targets: Mapping[str, Any], host: PluginHost
                     ) -> dict[str, float]:
    """Predicted latency per hardware target (``hw/<target>/latency_s``) from the cost model.

    ``targets`` as :func:`hairlab.costmodel.api.resolve_targets` gives them: name -> config node
    (None = the target's default config).
    """
    if not targets:
        return {}
    from hairlab.costmodel.api import latency_metrics

    was_training = model.training
    try:
        metrics = latency_metrics(model, input_shape, targets, host)
        return {k: float(v) for k, v in metrics.items()}
    finally:
        model.train(was_training)


def train_job(cfg: Any, tracker: Any, host: PluginHost) -> dict[str, Any]:
    """Train the configured model with the entries of ``host``; returns the final metrics and how it ended."""
    from hairlab import contract
    from hairlab.models import build_model, count_parameters
    from hairlab.training import checkpoint as ckpt
    from hairlab.training.config import EngineConfig
    from hairlab.training.distributed import setup, world_from_env
    from hairlab.training.engine import Engine
    from hairlab.training.progress import EpochProgress
    from hairlab.training.runtime import default_threads, resolve_device, seed_everything, set_threads

    contract.check_config(cfg, host)  # the runner did already; a direct caller gets it too, before any data
    ecfg = contract.settings(EngineConfig, cfg.get("trainer"), where="trainer")
    seed = int(cfg.get("seed", 0))
    threads = set_threads(ecfg.threads if ecfg.threads is not None else default_threads())
    world = world_from_env()
    device = setup(world, resolve_device(ecfg.device))
    seed_everything(seed, deterministic=ecfg.deterministic)

    data = build_data(cfg.get("dataset"), host)
    model = build_model(cfg.get("model"), host, num_classes=data.num_classes, input_shape=tuple(data.input_shape))
    optimizer = build_optimizer(model, cfg.get("optimizer"), host, ecfg.decay_norm_and_bias,
                                bias_lr_scale=ecfg.bias_lr_scale, norm_weight_lr_scale=ecfg.norm_weight_lr_scale)

    params = count_parameters(model)
    tracker.log_dataset(data)  # facts as data.* tags, load timings as data/* metrics, splits as MLflow inputs
    tracker.set_tags({"device": str(device), "threads": str(threads), "world_size": str(world.size)})
    first = {"model/params": float(params)}
    from hairlab.costmodel.api import resolve_targets

    first.update(hardware_metrics(model, _shape(data.input_shape), resolve_targets(cfg, host), host))
    tracker.log_metrics(first, step=0)

    directory = Path(ecfg.checkpoint_dir) if ecfg.checkpoint_dir else job_dir(tracker) / "checkpoints"
    progress = EpochProgress(ecfg.progress and world.main)
    engine = Engine(model, optimizer, data, ecfg, tracker, device=device, seed=seed, checkpoint_dir=directory,
                    progress=progress, world=world)
    ranks = f" x {world.size} processes" if world.size > 1 else ""
    evaluated = (f"evaluated on {engine.eval_split} (runs ranked by {engine.selection_metric})"
                 if engine.eval_split else "evaluated on nothing")
    stopping = f", early stop on {engine.stopper.metric}" if engine.stopper is not None else ""
    tracker.set_tags(engine_tags(engine, ecfg))
    progress.summary(
        f"{model.name}: {params:,} parameters on {device} ({threads} threads){ranks}; {data.name}: "
        f"{data.num_examples('train'):,} training examples, {evaluated}; {run_length_text(engine, ecfg)}"
        f"{stopping}; {engine.amp_name} ({engine.amp_why})"
        + (f"; evaluated with the {ecfg.averaging.describe()}" if ecfg.averaging is not None else ""))
    if ecfg.resume not in (None, "", False):
        found = ckpt.find(ecfg.resume, directory)
        if found is not None:
            engine.restore(found)
            tracker.set_tags({"resumed_from": str(found)})
    outcome = engine.fit()
    result: dict[str, Any] = {"status": outcome.status, "epoch": outcome.epoch, "step": outcome.step,
                              "model/params": params, "checkpoint": outcome.checkpoint,
                              "best_checkpoint": outcome.best_checkpoint,
                              "selection_metric": engine.selection_metric, "stop_reason": outcome.stop_reason,
                              "best": dict(engine.best) if engine.best else None}  # {metric, value, step}
    result.update({k: v for k, v in outcome.metrics.items() if k not in ("epoch", "step")})
    if outcome.status == "diverged":
        result.update({"diverged_step": outcome.diverged_step, "last_finite_loss": outcome.last_finite_loss})
    elif _wants_model(cfg) and world.main:
        log_model(tracker, engine)
    return result


def budget_text(ecfg: Any) -> str:
    return (f"{ecfg.max_minutes:g} min of training time (trainer.max_minutes; evaluations and checkpoints "
            "not counted)")


def run_length_text(engine: Any, ecfg: Any) -> str:
    """How long the job trains, as its first line says it."""
    steps = f"{engine.total_steps:,} steps of {ecfg.batch_size} (set by trainer.{engine.ends_by})"
    if ecfg.max_minutes is None:
        return steps
    if not engine.bounded:
        return f"batches of {ecfg.batch_size} for {budget_text(ecfg)}, the schedule on its share used"
    return (f"{steps} or {budget_text(ecfg)}, whichever ends first, the schedule on whichever share is "
            "further along")


def engine_tags(engine: Any, ecfg: Any) -> dict[str, str]:
    """The run's precision (and why), its time budget and its weight averaging, as tags."""
    tags = {"hairlab.amp": engine.amp_name, "hairlab.amp_source": engine.amp_why}
    if ecfg.max_minutes is not None:
        tags["hairlab.budget"] = budget_text(ecfg)
    if ecfg.averaging is not None:
        tags["hairlab.ema"] = ecfg.averaging.describe()
    return tags


def _wants_model(cfg: Any) -> bool:
    from hairlab.tracking.factory import tracking_settings

    return bool(tracking_settings(cfg).get("log_model", False))


def log_model(tracker: Any, engine: Any) -> None:
    """The trained model into the run (``tracking.log_model=true``), with two real input images.

    In eval mode and contiguous memory, so the logged model loads and predicts anywhere; the
    tracker saves a CPU, float32 copy with the example. Under ``trainer.ema`` it is the averaged
    model (the one every evaluation and best.pt used).
    """
    import torch

    split = engine.eval_split or "train"
    if split == "train":
        batches = engine.data.train_batches(2, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    else:
        batches = engine.data.eval_batches(split, 2, device=torch.device("cpu"))
    x, _ = next(iter(batches))
    tracker.log_model(engine.eval_model.to(memory_format=torch.contiguous_format).eval(), x[:2])


def _shape(shape: Any) -> tuple[int, int, int]:
    c, h, w = (int(s) for s in shape)
    return (c, h, w)
