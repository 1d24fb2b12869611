"""Measured latency on the local device, per layer and in total, to set beside a prediction.

**Per layer, in place** (``method="hooks"``, the default): a pre/post forward hook pair on every
leaf module brackets it inside a real forward pass, so each layer is timed with the cache and
allocator state the network really gives it (its input just written by the previous layer, its
output freshly allocated and, for maps of megabytes, page-faulted); the figure is the median
over ``repeats`` passes, minus the measured cost of an empty hook pair (:func:`hook_overhead`,
an ``nn.Identity``'s figure: two clock reads and two Python calls, 2-3 us). The host
calibration times its sweep the same way, so prediction and truth share one timer.
``method="alone"`` runs each layer alone on its real input in a timed loop (:func:`time_call`);
kept for comparison: alone, a layer finds its buffers hot and recycled, and on HairNet-ImageNet
the layers then sum to only 55-70% of the measured total, so it is not the per-layer truth.

**In total** the model runs without hooks, the median (and best) of ``repeats`` passes after a
warm-up, with the spread (IQR / median) kept as the noise figure. With one CPU thread the
clock is the thread's CPU time, which other processes on a shared machine cannot inflate;
with more threads the figure is wall time (the worker threads' CPU time is not the latency),
and the process's CPU time is kept beside it. The model runs in channels_last by default, as
training runs it (``trainer.channels_last``); its memory format is restored afterwards.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hairlab.costmodel.engine import Report

#: Seconds of work per timed sample (enough calls that the clock's cost disappears).
SAMPLE_S = 2e-3


def time_call(fn: Callable[[], Any], clock: Callable[[], float], *, samples: int = 7, warmup: int = 2,
              sample_s: float = SAMPLE_S, max_inner: int = 5000) -> tuple[float, float]:
    """``(median seconds per call, IQR / median)`` of ``fn``: ``samples`` loops of enough calls each."""
    for _ in range(warmup):
        fn()
    t0 = clock()
    fn()
    one = max(clock() - t0, 1e-7)
    inner = max(1, min(max_inner, int(sample_s / one)))
    per_call = []
    for _ in range(samples):
        t0 = clock()
        for _ in range(inner):
            fn()
        per_call.append((clock() - t0) / inner)
    return statistics.median(per_call), iqr_ratio(per_call)


def iqr_ratio(values: list[float]) -> float:
    """Interquartile range over median: the noise of a set of timings."""
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    med = statistics.median(values)
    return (q[2] - q[0]) / med if med else 0.0


@dataclass
class Measurement:
    #: Best total over the repeats (the clock below), and the median.
    total_s: float
    total_median_s: float
    #: Median wall time of the whole forward pass (includes time lost to other processes).
    wall_median_s: float
    #: Seconds per leaf module, one entry per call within a forward pass (a module such as a
    #: shared ReLU may run several times): the median of its timed samples.
    per_module_s: dict[str, list[float]] = field(default_factory=dict)
    clock: str = "wall time"
    repeats: int = 0
    threads: int = 0
    batch_size: int = 1
    loadavg: tuple[float, float, float] | None = None
    device: str = "cpu"
    #: IQR / median of the total's repeats (its noise), on the clock above and on wall time.
    total_iqr: float = 0.0
    wall_iqr: float = 0.0
    #: Median process CPU time of a pass (all threads' work; with one thread about total_median_s).
    cpu_median_s: float = 0.0
    #: How per-layer figures were taken (``alone`` or ``hooks``) and in which memory format.
    method: str = "hooks"
    #: The measured cost of an empty pre/post hook pair (taken out of every per-layer figure).
    hook_overhead_s: float = 0.0
    channels_last: bool = True
    #: IQR / median of each per-layer figure, same layout as ``per_module_s``.
    per_module_iqr: dict[str, list[float]] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("per_module_s")
        data.pop("per_module_iqr")
        return data


def _leaves(model: Any) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]


def measure_model(model: Any, input_shape: tuple[int, ...], *, batch_size: int = 1,
                  threads: int | None = None, repeats: int = 15, warmup: int = 3, method: str = "hooks",
                  channels_last: bool = True, per_layer: bool = True, samples: int = 7) -> Measurement:
    """Time ``model`` in eval mode on the device it lives on (its memory format restored after)."""
    import torch

    from hairlab.costmodel.calibrate import clock_for

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    n_threads = torch.get_num_threads()
    clock = time.perf_counter if cuda else clock_for(n_threads)
    was_training = model.training
    x = torch.randn(batch_size, *input_shape, device=device)
    nhwc = channels_last and x.dim() == 4
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
        model.to(memory_format=torch.channels_last)
    per_module: dict[str, list[float]] = {}
    per_iqr: dict[str, list[float]] = {}
    handles = []
    hook_cost = 0.0
    try:
        model.eval()
        with torch.no_grad():
            for _ in range(warmup):
                model(x)
            totals, walls, cpus = [], [], []
            for _ in range(repeats):
                sync()
                t0, w0, c0 = clock(), time.perf_counter(), time.process_time()
                model(x)
                sync()
                totals.append(clock() - t0)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            if per_layer:
                handles = (_alone_hooks if method == "alone" else _bracket_hooks)(
                    model, clock, sync, per_module, per_iqr, samples if method == "alone" else repeats)
                model(x)
                if method != "alone":
                    for _ in range(repeats - 1):
                        model(x)
                    hook_cost = hook_overhead(clock, sync)
                    _reduce_bracketed(per_module, per_iqr, hook_cost)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        if nhwc:
            model.to(memory_format=torch.contiguous_format)
        torch.set_num_threads(old_threads)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return Measurement(min(totals), statistics.median(totals), statistics.median(walls), per_module,
                       "thread CPU time" if clock is time.thread_time else "wall time", repeats, n_threads,
                       batch_size, load, str(device), iqr_ratio(totals), iqr_ratio(walls),
                       statistics.median(cpus), method, hook_cost, nhwc, per_iqr)


def _alone_hooks(model: Any, clock: Callable[[], float], sync: Callable[[], None],
                 per_module: dict[str, list[float]], per_iqr: dict[str, list[float]], samples: int) -> list[Any]:
    """Pre-hooks that time each leaf module alone on the input it is about to get."""
    busy = [False]

    def pre(name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            if busy[0]:
                return
            busy[0] = True
            try:
                def call() -> None:
                    module(*args)
                    sync()
                median, iqr = time_call(call, clock, samples=samples)
            finally:
                busy[0] = False
            per_module.setdefault(name, []).append(median)
            per_iqr.setdefault(name, []).append(iqr)
        return hook

    return [m.register_forward_pre_hook(pre(name)) for name, m in _leaves(model)]


def _bracket_hooks(model: Any, clock: Callable[[], float], sync: Callable[[], None],
                   per_module: dict[str, list[float]], per_iqr: dict[str, list[float]], _samples: int) -> list[Any]:
    """Pre/post hook pairs around each leaf module, one sample per pass (samples collected raw)."""
    starts: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    raw: dict[str, list[list[float]]] = {}
    per_module.clear()
    handles = []

    def pre(name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            if name == first:
                calls.clear()
            sync()
            starts.setdefault(name, []).append(clock())
        return hook

    def post(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            sync()
            elapsed = clock() - starts[name].pop()
            index = calls.get(name, 0)
            calls[name] = index + 1
            slots = raw.setdefault(name, [])
            while len(slots) <= index:
                slots.append([])
            slots[index].append(elapsed)
        return hook

    leaves = _leaves(model)
    first = leaves[0][0] if leaves else ""
    for name, m in leaves:
        handles.append(m.register_forward_pre_hook(pre(name)))
        handles.append(m.register_forward_hook(post(name)))
    per_module["__raw__"] = raw  # type: ignore[assignment]
    return handles


def hook_overhead(clock: Callable[[], float], sync: Callable[[], None], passes: int = 51) -> float:
    """What a bracketing hook pair adds to a layer's figure: the median of an ``nn.Identity``'s."""
    import torch

    probe = torch.nn.Sequential(torch.nn.Identity())
    per_module: dict[str, Any] = {}
    handles = _bracket_hooks(probe, clock, sync, per_module, {}, passes)
    x = torch.zeros(1)
    try:
        for _ in range(passes):
            probe(x)
    finally:
        for h in handles:
            h.remove()
    return float(statistics.median(per_module["__raw__"]["0"][0]))


def _reduce_bracketed(per_module: dict[str, Any], per_iqr: dict[str, list[float]], overhead: float = 0.0) -> None:
    raw = per_module.pop("__raw__", {})
    for name, slots in raw.items():
        # What is left after the hooks' own cost, never below a tenth of the raw figure.
        per_module[name] = [max(statistics.median(v) - overhead, 0.1 * statistics.median(v)) for v in slots]
        per_iqr[name] = [iqr_ratio(v) for v in slots]


def attach(report: Report, measurement: Measurement) -> list[float | None]:
    """Measured seconds for each report row (None for rows no module ran, e.g. duplicates)."""
    out: list[float | None] = []
    seen: dict[str, int] = {}
    for sources in report.sources:
        times = []
        for s in sources:
            k = seen.get(s, 0)
            seen[s] = k + 1
            per_call = measurement.per_module_s.get(s, [])
            times.append(per_call[k] if k < len(per_call) else None)
        out.append(sum(times) if times and None not in times else None)  # type: ignore[arg-type]
    report.measured = out
    report.measurement = measurement.facts()
    return out
