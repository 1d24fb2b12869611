"""Host calibration: measure this machine's rates with torch, once, and cache them.

Micro-benchmarks, each the best of several timed repeats after a warm-up: matrix throughput
(a square GEMM, and the convolution kernels torch really uses: 3x3, 1x1 and depthwise, which
on a CPU run at very different fractions of GEMM speed), generic-op throughput (inference
BN, ReLU, max pool, element-wise add), memory bandwidth (a copy far larger than the
last-level cache), and the fixed cost of calling a module of each kind on a tiny input
(dispatch and kernel set-up, which dominates small layers; subtracted from the rates). The cache
lives in ``$HAIRLAB_CACHE`` (or ``~/.cache/hairlab``), keyed by CPU model, thread count and
torch version.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hairlab.errors import HairlabError

VERSION = 4
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


def _key(threads: int) -> str:
    import torch

    raw = f"{cpu_model()}|{threads}|{torch.__version__}|v{VERSION}"
    return "".join(c if c.isalnum() else "_" for c in raw)[:150]


def clock_for(threads: int) -> Callable[[], float]:
    """The clock to time torch CPU work with.

    With one intra-op thread torch runs every kernel in the calling thread, so that thread's
    CPU time is the work done, whatever else the (shared) machine is running; with more
    threads only wall time is meaningful.
    """
    return time.thread_time if threads == 1 else time.perf_counter


def _best_time(fn: Callable[[], Any], repeats: int, warmup: int = 2,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Fastest of ``repeats`` timed calls: other processes only ever add time."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def measure(threads: int | None = None, quick: bool = False) -> dict[str, Any]:
    """Run the micro-benchmarks now (a few seconds; ``quick`` for tests).

    Each rate is operations per second on a representative mid-network shape (56x56 maps),
    counted the way the cost engine counts that layer kind.
    """
    import torch
    import torch.nn.functional as F

    threads = threads or torch.get_num_threads()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    reps = 3 if quick else 15
    s = 28 if quick else 56

    clock = clock_for(threads)
    fixed: dict[str, float] = {}

    def rate(ops: float, fn: Callable[[], Any], kind: str = "") -> float:
        """ops / time, with the kind's fixed per-call cost taken out of the time."""
        t = _best_time(fn, reps, clock=clock)
        return ops / max(t - fixed.get(kind, 0.0), 0.1 * t)

    try:
        with torch.no_grad():
            # Fixed cost per call of each kernel class: the module on a tiny (1x8x4x4) input.
            tiny4 = torch.randn(1, 8, 4, 4)
            probes = {
                "conv": torch.nn.Conv2d(8, 8, 3, padding=1, bias=False),
                "pwconv": torch.nn.Conv2d(8, 8, 1, bias=False),
                "dwconv": torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                "bn": torch.nn.BatchNorm2d(8).eval(),
                "relu": torch.nn.ReLU(),
                "maxpool": torch.nn.MaxPool2d(2),
                "dense": torch.nn.Linear(8, 8),
            }
            for kind, probe in probes.items():
                arg = torch.randn(1, 8) if kind == "dense" else tiny4
                fixed[kind] = _best_time(functools.partial(probe, arg), 10 if quick else 100, 5, clock)
            n = 256 if quick else 512
            a, b = torch.randn(n, n), torch.randn(n, n)
            gemm = rate(2 * n**3, lambda: torch.mm(a, b), "dense")
            x = torch.randn(1, 32, s, s)
            w3 = torch.randn(64, 32, 3, 3)
            conv = rate(2 * 64 * 32 * 9 * s * s, lambda: F.conv2d(x, w3, padding=1), "conv")
            xp = torch.randn(1, 128, s // 2, s // 2)
            w1 = torch.randn(128, 128, 1, 1)
            pw = rate(2 * 128 * 128 * xp[0, 0].numel(), lambda: F.conv2d(xp, w1), "pwconv")
            y = torch.randn(1, 64, s, s)
            wd = torch.randn(64, 1, 3, 3)
            dw = rate(2 * 9 * y.numel(), lambda: F.conv2d(y, wd, padding=1, groups=64), "dwconv")
            mean, var, gamma, beta = torch.zeros(64), torch.ones(64), torch.ones(64), torch.zeros(64)
            bn = rate(2 * y.numel(), lambda: F.batch_norm(y, mean, var, gamma, beta, False), "bn")
            relu = rate(y.numel(), lambda: F.relu(y), "relu")
            pool = rate(y.numel(), lambda: F.max_pool2d(y, 2), "maxpool")
            generic = rate(y.numel(), lambda: torch.add(y, y))
            big = torch.empty((8 if quick else 48) * 2**20 // 4)
            dst = torch.empty_like(big)
            bandwidth = 2 * big.numel() * 4 / _best_time(lambda: dst.copy_(big), max(3, reps // 3), 1, clock)
            module, tiny = torch.nn.ReLU(), torch.randn(1, 8)
            overhead = _best_time(lambda: module(tiny), 10 if quick else 100, 5, clock)
    finally:
        torch.set_num_threads(old)
    return {
        "version": VERSION, "cpu": cpu_model(), "threads": threads, "torch": torch.__version__,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg": _loadavg(),
        "clock": "thread CPU time" if threads == 1 else "wall time",
        "gemm_flops": gemm, "conv_flops": conv, "pwconv_flops": pw, "dwconv_flops": dw, "bn_flops": bn,
        "relu_flops": relu, "pool_flops": pool, "generic_flops": generic,
        "bandwidth": bandwidth, "layer_overhead_s": overhead, "kind_overhead_s": fixed,
        "caches": cache_sizes(),
    }


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
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
    data = measure(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)  # atomic: parallel jobs never read half a file
    data["cache_file"] = str(path)
    return data
