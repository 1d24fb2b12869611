"""``trainer.amp=auto`` on a CPU: float32 or bfloat16 autocast, whichever a cached probe measured faster.

Whether bf16 autocast pays on a CPU depends on the chip (AMX / AVX512-BF16 or not) and on the
network: on an AVX2 EPYC there are no bf16 kernels at all (oneDNN emulates them, far slower),
and on an AMX Xeon a depthwise/BN-bound HairNet ran at 0.9x. So ``auto`` does not guess: on a
CPU whose oneDNN has bf16 kernels it times a few training steps of a standard small
depthwise-separable conv net in both precisions, interleaved step by step (so a shared
machine's load swings hit both alike), and keeps bf16 only when it wins by :data:`MARGIN`.
The verdict is cached under hairlab's cache dir (``<cache>/amp/``), keyed by CPU model,
thread count and torch version like the host calibration, so the probe runs once per machine;
delete the file (named in the run's ``hairlab.amp_source`` tag) to measure again, or force a
choice with ``trainer.amp=bf16`` / ``false``. CUDA keeps its own rule (bf16 where supported,
else fp16 with a gradient scaler).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

VERSION = 1
#: bf16 must be this much faster than fp32 (step time ratio) to be chosen.
MARGIN = 1.05
PROBE_BATCH, PROBE_STEPS = 64, 6


def cache_dir() -> Path:
    from hairlab.data.paths import cache_dir as root

    return root() / "amp"


def cache_file(threads: int | None = None) -> Path:
    import re

    import torch

    from hairlab.tracking.environment import cpu_model

    threads = threads or torch.get_num_threads()
    key = re.sub(r"[^A-Za-z0-9.]+", "-", f"{cpu_model()}-t{threads}-torch{torch.__version__}").strip("-")
    return cache_dir() / f"{key}.json"


def bf16_kernels() -> bool:
    """Whether this CPU's oneDNN has native bf16 kernels (else autocast emulates them, slowly)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def probe_net() -> Any:
    """The probe's standard network: a conv stem and two depthwise-separable blocks with BN, GAP, dense."""
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         *block(32, 64, 2), *block(64, 128, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def measure(steps: int = PROBE_STEPS, batch: int = PROBE_BATCH) -> dict[str, Any]:
    """Seconds per training step in fp32 and under bf16 autocast (medians of interleaved steps)."""
    import torch

    torch.manual_seed(0)
    net = probe_net().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step(bf16: bool) -> float:
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - began

    step(False), step(True)  # oneDNN builds its primitives on the first call of each
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(steps):
        times["fp32"].append(step(False))
        times["bf16"].append(step(True))
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    return {"fp32_s": fp32, "bf16_s": bf16, "speedup": fp32 / bf16 if bf16 > 0 else 0.0,
            "steps": steps, "batch": batch}


def cpu_choice(threads: int | None = None) -> tuple[str, str]:
    """``fp32`` or ``bf16`` for this CPU, and where the verdict came from (for the tags and first line)."""
    path = cache_file(threads)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("version") == VERSION and data.get("choice") in ("fp32", "bf16"):
                return str(data["choice"]), f"cached probe {path} ({float(data['speedup']):.2f}x)"
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: measure again
    if not bf16_kernels():
        return "fp32", "no bf16 kernels on this CPU"
    figures = measure()
    choice = "bf16" if figures["speedup"] >= MARGIN else "fp32"
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    data = {"version": VERSION, "choice": choice, **figures, "margin": MARGIN, "load_average": load,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)  # atomic: parallel jobs never read half a file
    return choice, f"probe {path} ({figures['speedup']:.2f}x)"
