"""Host calibration: time this machine's layers with torch, once, fit the host model, cache it.

What is measured: every layer of a set of small chains of layers (:data:`CHAINS`: a standard
conv, a depthwise and a pointwise conv, each with BN and ReLU, then pools, GAP, a dense layer,
a softmax; :data:`DENSE_CHAINS` for dense layers), chosen to span the shape regimes of conv
nets (3 to 1024 channels, 7x7 to 227x227 maps, 1x1 to 11x11 kernels, strides 1 to 4), at
batch 1 and 8, channels_last as training runs, each layer timed *in place* by
``hairlab.costmodel.measure`` exactly as ``--measure`` times a model (the median over passes,
the hooks' own cost taken out), so calibration and validation share one timer and one context
(a layer's input just written by the previous one, its output freshly allocated). Then
:func:`hairlab.costmodel.hostfit.fit` fits each kind's time model. Copy bandwidth of written
buffers is probed within L2, within L3 and beyond the last-level cache.

The cache lives in ``$HAIRLAB_CACHE/calibration`` (or ``~/.cache/hairlab``), one file per CPU
model, thread count, torch version and :data:`VERSION`, holding the fit, its samples and the
facts of the run (CPU, threads, date, load averages before and after, seconds taken). With one
thread the clock is the thread's CPU time, with more the wall time (:func:`clock_for`).
About 20 s per thread count on a 2-core EPYC; ``HAIRLAB_CALIBRATION=quick`` (the test suite)
takes a few seconds and is cached apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hairlab.errors import HairlabError

VERSION = 11
_allow_run = [True]


class CalibrationUnavailable(HairlabError):
    """No cached calibration, and running one is not allowed here."""


@contextlib.contextmanager
def cached_only() -> Iterator[None]:
    """Inside this block, calibrations come from the cache or not at all (cheap callers)."""
    _allow_run.append(False)
    try:
        yield
    finally:
        _allow_run.pop()


def cache_dir() -> Path:
    """Calibrations live under hairlab's one cache rule (``hairlab.data.paths.cache_dir``)."""
    from hairlab.data.paths import cache_dir as root

    return root() / "calibration"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_sizes() -> dict[str, int]:
    """Data/unified cache sizes per level from sysfs (bytes), e.g. {'L2': 524288, 'L3': ...}."""
    out: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        out[f"L{level}"] = int(text.rstrip("KMG")) * mult
    return out


def quick_mode() -> bool:
    """``HAIRLAB_CALIBRATION=quick``: a few-second calibration (test suites, CI), cached apart."""
    return os.environ.get("HAIRLAB_CALIBRATION", "") == "quick"


def _key(threads: int) -> str:
    import torch

    raw = f"{cpu_model()}|{threads}|{torch.__version__}|v{VERSION}{'|quick' if quick_mode() else ''}"
    return "".join(c if c.isalnum() else "_" for c in raw)[:150]


def clock_for(threads: int) -> Callable[[], float]:
    """The clock to time torch CPU work with.

    With one intra-op thread torch runs every kernel in the calling thread, so that thread's
    CPU time is the work done, whatever else the (shared) machine is running; with more
    threads only wall time is meaningful.
    """
    return time.thread_time if threads == 1 else time.perf_counter


#: One calibration chain: input channels, conv output channels, input size, kernel, stride, conv
#: groups, pointwise output channels, dense outputs. Chosen to span the regimes a conv net's layers
#: fall in (3-channel stems to 512-channel 7x7 maps, 1x1 to 11x11 kernels, strides 1 to 4), not
#: any one model's layers.
CHAINS: tuple[tuple[int, int, int, int, int, int, int, int], ...] = (
    (3, 32, 224, 3, 2, 1, 64, 1000), (3, 16, 224, 3, 2, 1, 16, 10), (3, 64, 227, 11, 4, 1, 96, 1000),
    (3, 32, 32, 3, 1, 1, 64, 10), (3, 24, 112, 3, 2, 1, 144, 10), (3, 64, 64, 5, 2, 1, 32, 100),
    (16, 32, 112, 3, 2, 1, 96, 1000), (16, 16, 56, 3, 1, 1, 32, 10), (32, 64, 56, 3, 1, 1, 128, 10),
    (32, 32, 32, 3, 1, 1, 192, 10), (64, 128, 56, 3, 2, 1, 128, 1000), (64, 64, 16, 3, 1, 1, 384, 10),
    (64, 64, 112, 3, 2, 1, 32, 10), (96, 256, 27, 5, 1, 2, 256, 1000), (128, 128, 28, 3, 1, 1, 256, 10),
    (128, 128, 8, 3, 1, 1, 512, 10), (128, 256, 28, 3, 2, 1, 576, 1000), (256, 256, 14, 3, 1, 1, 128, 10),
    (256, 384, 13, 3, 1, 1, 384, 1000), (384, 384, 13, 3, 1, 2, 256, 10), (256, 512, 14, 3, 2, 1, 1024, 1000),
    (512, 512, 7, 3, 1, 1, 1000, 10), (160, 960, 7, 1, 1, 1, 320, 1280),
)
#: Dense chains (input features, hidden, hidden, outputs) with ReLUs between, vectors of any width.
DENSE_CHAINS: tuple[tuple[int, int, int, int], ...] = (
    (9216, 4096, 4096, 1000), (1024, 1000, 512, 10), (256, 128, 64, 10), (1280, 1000, 2048, 100),
)
#: Past this many multiply-accumulates per pass a chain is not run at batch 8 (time budget).
MAX_MACS = 3e9
#: Seconds after which the remaining batch-8 runs are skipped (a loaded machine; recorded).
BUDGET_S = 60.0


def _chain(cin: int, cout: int, hw: int, k: int, stride: int, groups: int, cpw: int, classes: int) -> Any:
    """conv-BN-ReLU, depthwise-BN-ReLU, pointwise-BN-ReLU, pools, GAP, dense, softmax: every kind once."""
    from torch import nn

    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, stride=1 + (hw >= 56 and stride == 1), padding=1, groups=cout, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cpw, 1, bias=False), nn.BatchNorm2d(cpw), nn.ReLU(inplace=True),
    ]
    # A second depthwise separable block at the same size: its layers follow layers of their own
    # size, as most layers of a network do (the first block's follow a jump in size).
    layers += [nn.Conv2d(cpw, cpw, 3, padding=1, groups=cpw, bias=False), nn.BatchNorm2d(cpw), nn.ReLU(inplace=True),
               nn.Conv2d(cpw, cpw, 1, bias=False), nn.BatchNorm2d(cpw), nn.ReLU(inplace=True)]
    side = hw // stride // (1 + (hw >= 56 and stride == 1))
    if side >= 4:
        layers.append(nn.MaxPool2d(2) if side % 4 else nn.MaxPool2d(3, 2, 1))
        side //= 2
    if side >= 4 and cpw <= 256:
        layers.append(nn.AvgPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cpw, classes), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


def _dense_chain(a: int, b: int, c: int, d: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(a, b), nn.ReLU(inplace=True), nn.Linear(b, c), nn.ReLU(inplace=True),
                         nn.Linear(c, d))


def _chain_samples(model: Any, shape: tuple[int, ...], batch: int, threads: int, passes: int) -> list[dict[str, Any]]:
    """Each layer of ``model`` timed in place (hooks, as ``--measure`` does), with its fit features' sizes."""
    from hairlab.costmodel.hostfit import layer_dims, mark_previous
    from hairlab.costmodel.layers import extract_layers
    from hairlab.costmodel.measure import measure_model

    layers = mark_previous(extract_layers(model, shape))
    m = measure_model(model, shape, batch_size=batch, threads=threads, repeats=passes, warmup=2)
    seen: dict[str, int] = {}
    out = []
    for layer in layers:
        k = seen.get(layer.name, 0)
        seen[layer.name] = k + 1
        times = m.per_module_s.get(layer.name, [])
        if k < len(times):
            out.append({"kind": layer.kind, "dims": layer_dims(layer, batch), "time_s": times[k],
                        "ops": _ops(layer) * batch})
    return out


def _ops(layer: Any) -> float:
    """Operations as the host target counts them (its conventions), for the rate fields."""
    from hairlab.costmodel.conventions import count_ops
    from hairlab.costmodel.target import Conventions

    return count_ops(layer, Conventions())


def bandwidth_probe(nbytes: int, clock: Callable[[], float], repeats: int = 7) -> float:
    """Copy bandwidth (bytes read + written per second) of a buffer of ``nbytes``, median of repeats.

    The source is written first: a never-written ``torch.empty`` buffer maps the kernel's zero
    page, and copying it reads one cached page, overstating bandwidth 2-3x.
    """
    from hairlab.costmodel.measure import time_call

    src, dst = probe_buffers(nbytes)
    t, _ = time_call(lambda: dst.copy_(src), clock, samples=repeats, warmup=1)
    return 2 * src.numel() * 4 / t


#: glibc's malloc maps blocks of this size and more on their own, whatever its dynamic threshold.
FRESH_MAP_BYTES = 32 * 2**20


def fault_probe(clock: Callable[[], float], nbytes: int, repeats: int = 5) -> float:
    """Seconds per byte of first-touching a freshly mapped buffer (page faults), beyond writing it again."""
    import statistics

    import torch

    n = max(1, nbytes // 4)
    first, again = [], []
    for _ in range(repeats):
        t0 = clock()
        buf = torch.empty(n)
        buf.fill_(1.0)
        first.append(clock() - t0)
        t0 = clock()
        buf.fill_(2.0)
        again.append(clock() - t0)
        del buf
    return max(0.0, statistics.median(first) - statistics.median(again)) / (4 * n)


def probe_buffers(nbytes: int) -> tuple[Any, Any]:
    """Source and destination of the copy probe, both written (fp32, ``nbytes`` each)."""
    import torch

    n = max(1, nbytes // 4)
    return torch.full((n,), 1.5), torch.full((n,), 1.0)


def measure(threads: int | None = None, quick: bool = False) -> dict[str, Any]:
    """Run the calibration now (under a minute; ``quick``: a few seconds, for tests).

    Every layer of a set of small chains (:data:`CHAINS`, each conv-BN-ReLU, depthwise,
    pointwise, pools, GAP, dense, softmax) is timed in place at batch 1 and 8, channels_last,
    the median of several passes; :func:`hairlab.costmodel.hostfit.fit` fits each kind's time
    model to them. Bandwidth is probed within L2, within L3 and beyond the last-level cache.
    """
    import torch

    from hairlab.costmodel.hostfit import fit, fresh_map_s
    from hairlab.costmodel.layers import extract_layers

    threads = threads or torch.get_num_threads()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    clock = clock_for(threads)
    caches = cache_sizes()
    llc = max(caches.values()) if caches else 32 * 2**20
    load_before = _loadavgs()
    started = time.perf_counter()
    samples: list[dict[str, Any]] = []
    try:
        with torch.no_grad():
            chains = CHAINS[3:4] + CHAINS[15:16] if quick else CHAINS
            dense = DENSE_CHAINS[2:3] if quick else DENSE_CHAINS
            passes = 3 if quick else 9
            runs: list[tuple[Any, tuple[int, ...], int]] = []  # (chain, input shape, batch)
            for batch in (1,) if quick else (1, 8):  # batch 1 first: every kind is covered early
                for spec in chains:
                    chain, image = _chain(*spec), (spec[0], spec[2], spec[2])
                    if batch == 1 or sum(x.macs for x in extract_layers(chain, image)) * batch <= MAX_MACS:
                        runs.append((chain, image, batch))
                runs += [(_dense_chain(*d), (d[0],), batch) for d in dense]
            skipped = 0
            for net, input_shape, batch in runs:
                if time.perf_counter() - started > BUDGET_S and batch > 1:
                    skipped += 1  # a busy machine: keep the calibration near its time budget
                    continue
                samples += _chain_samples(net, input_shape, batch, threads, passes)
            sizes = {"L2": caches.get("L2", 2**20) // 4, "L3": llc // 4, "DRAM": (1 if quick else 4) * llc}
            bandwidths = {level: bandwidth_probe(int(size), clock, 3 if quick else 7) for level, size in sizes.items()}
            fault_s = fault_probe(clock, 2 * FRESH_MAP_BYTES, 3 if quick else 5)
    finally:
        torch.set_num_threads(old)
    for s in samples:  # what fresh maps cost is the probe's, not the fit's
        extra = fresh_map_s(s["kind"], s["dims"], (FRESH_MAP_BYTES, fault_s))
        s["time_s"] = max(s["time_s"] - extra, 0.1 * s["time_s"])
    model_fit = fit(samples, caches)
    rates = _rates(samples)
    overheads = {k: v["coef"][0] for k, v in model_fit.items() if v["features"][0] == "one"}
    return {
        "version": VERSION, "cpu": cpu_model(), "threads": threads, "torch": torch.__version__,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg": load_before[0] if load_before else None,
        "loadavgs": {"before": load_before, "after": _loadavgs()},
        "seconds": round(time.perf_counter() - started, 1), "quick": quick,
        "clock": "thread CPU time" if threads == 1 else "wall time", "memory_format": "channels_last",
        "gemm_flops": max(rates.get("dense", 0.0), rates.get("pwconv", 0.0), rates.get("conv", 0.0)) or 1e9,
        "conv_flops": rates.get("conv", 1e9), "pwconv_flops": rates.get("pwconv", 1e9),
        "dwconv_flops": rates.get("dwconv", 1e9), "bn_flops": rates.get("bn", 1e9),
        "relu_flops": rates.get("relu", 1e9), "pool_flops": rates.get("maxpool", 1e9),
        "generic_flops": rates.get("bn", 1e9), "rates": rates,
        "bandwidth": bandwidths["DRAM"], "bandwidths": bandwidths,
        "layer_overhead_s": sorted(overheads.values())[len(overheads) // 2] if overheads else 0.0,
        "kind_overhead_s": overheads, "caches": caches, "fit": model_fit, "samples": samples,
        "fresh_map_bytes": FRESH_MAP_BYTES, "page_fault_s_per_byte": fault_s,
        "runs": len(runs), "runs_skipped_over_budget": skipped,
    }


def _rates(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Sustained ops/s per kind: all its samples' ops over all their time (big layers weigh most)."""
    ops: dict[str, float] = {}
    secs: dict[str, float] = {}
    for s in samples:
        ops[s["kind"]] = ops.get(s["kind"], 0.0) + s["ops"]
        secs[s["kind"]] = secs.get(s["kind"], 0.0) + s["time_s"]
    return {k: ops[k] / secs[k] for k in ops if secs[k] > 0 and ops[k] > 0}


def _loadavgs() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def calibration(threads: int | None = None, *, refresh: bool = False) -> dict[str, Any]:
    """The cached calibration for this CPU and thread count, measuring it if needed."""
    import torch

    threads = threads or torch.get_num_threads()
    path = cache_dir() / f"{_key(threads)}.json"
    if path.exists() and not refresh:
        try:
            data = json.loads(path.read_text())
            if data.get("version") == VERSION:
                data["cache_file"] = str(path)
                return data
        except (OSError, ValueError):
            pass  # unreadable cache: measure again
    if not _allow_run[-1]:
        raise CalibrationUnavailable(
            f"no cached calibration for this CPU ({path}); run `hairlab hw-report hardware=host` once")
    data = measure(threads, quick=quick_mode())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)  # atomic: parallel jobs never read half a file
    data["cache_file"] = str(path)
    return data
