"""Measured latency on the local device, per layer and in total, to set beside a prediction.

Per-layer times come from forward pre/post hooks on every leaf module (CPU execution is
synchronous, so a hook pair brackets the layer's kernels; on CUDA the device is synchronized
in each hook). The total is timed separately, without hooks. With one CPU thread the clock
is the thread's CPU time, which other processes on a shared machine cannot inflate; wall
time is recorded too. Each figure is the best (and the median) of ``repeats`` runs after a
warm-up, and the load average at the time is kept with them.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hairlab.costmodel.engine import Report


@dataclass
class Measurement:
    #: Best total over the repeats (the clock below), and the median.
    total_s: float
    total_median_s: float
    #: Median wall time of the whole forward pass (includes time lost to other processes).
    wall_median_s: float
    #: Best time per leaf module, one entry per call within a forward pass (a module such as a
    #: shared ReLU may run several times).
    per_module_s: dict[str, list[float]] = field(default_factory=dict)
    clock: str = "wall time"
    repeats: int = 0
    threads: int = 0
    batch_size: int = 1
    loadavg: tuple[float, float, float] | None = None
    device: str = "cpu"

    def facts(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("per_module_s")
        return data


def measure_model(model: Any, input_shape: tuple[int, int, int], *, batch_size: int = 1,
                  threads: int | None = None, repeats: int = 15, warmup: int = 3) -> Measurement:
    """Time ``model`` in eval mode on the device it lives on."""
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
    starts: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    samples: dict[tuple[str, int], list[float]] = {}
    handles = []

    def pre(name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            sync()
            starts.setdefault(name, []).append(clock())
        return hook

    def post(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            sync()
            elapsed = clock() - starts[name].pop()
            index = calls.get(name, 0)
            calls[name] = index + 1
            samples.setdefault((name, index), []).append(elapsed)
        return hook

    try:
        model.eval()
        with torch.no_grad():
            for _ in range(warmup):
                model(x)
            totals, walls = [], []
            for _ in range(repeats):
                sync()
                t0, w0 = clock(), time.perf_counter()
                model(x)
                sync()
                totals.append(clock() - t0)
                walls.append(time.perf_counter() - w0)
            for name, module in model.named_modules():
                if next(module.children(), None) is None:
                    handles.append(module.register_forward_pre_hook(pre(name)))
                    handles.append(module.register_forward_hook(post(name)))
            for _ in range(repeats):
                calls.clear()
                model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        torch.set_num_threads(old_threads)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    per_module: dict[str, list[float]] = {}
    for (name, _call), values in sorted(samples.items()):
        per_module.setdefault(name, []).append(min(values))
    return Measurement(min(totals), statistics.median(totals), statistics.median(walls), per_module,
                       "thread CPU time" if clock is time.thread_time else "wall time", repeats, n_threads,
                       batch_size, load, str(device))


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
