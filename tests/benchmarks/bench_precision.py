"""Training-step speed by precision and layout on this CPU: fp32 / bf16 autocast, channels_last on/off,
torch.compile on/off, each as a ratio to the plain channels_last fp32 loop (bench_train's baseline)
measured in the same run.

HairNet-CIFAR (conf/model/hairnet_cifar.yaml) at batch 128 with Adam, one fixed in-memory batch per
variant, every variant from the same initial weights. The machine is shared and its load swings
rates several-fold within a minute, so the variants are **interleaved step by step**: each round
runs one step of every variant in turn, and a variant's ratio is computed within the round from
steps that ran side by side (ratio = baseline step time / variant step time: > 1 is faster).
``torch.compile`` is timed twice: its first call (compilation included) and its steps after.

This is what ``trainer.amp=auto`` (:mod:`hairlab.training.precision`) decides on in a smaller
form, and what the docs' Performance section quotes.

On a CPU without bf16 kernels (AVX2 only) the bf16 variants are skipped unless ``--variants all``:
oneDNN emulates them at a few times fp32's step time (docs/training.md has the figures).

Run: ``python tests/benchmarks/bench_precision.py [--steps N] [--rounds R] [--no-compile] [--variants ...]``;
one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
BATCH = 128
#: name -> (autocast bf16, channels_last, compile); the first is the baseline
VARIANTS = {
    "fp32_cl": (False, True, False),
    "fp32_nchw": (False, False, False),
    "bf16_cl": (True, True, False),
    "bf16_nchw": (True, False, False),
    "fp32_cl_compile": (False, True, True),
}


def model() -> torch.nn.Module:
    from hairlab.models import build_model
    from hairlab.plugin_manager import get_host

    torch.manual_seed(0)
    return build_model(OmegaConf.load(ROOT / "conf" / "model" / "hairnet_cifar.yaml"), get_host())


class Loop:
    """One variant's training loop on its own copy of the model."""

    def __init__(self, bf16: bool, channels_last: bool, compiled: bool) -> None:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.bf16 = bf16
        net = model().to(memory_format=fmt).train()
        self.opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        self.net: Any = torch.compile(net) if compiled else net
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(BATCH, 3, 32, 32, generator=g).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 10, (BATCH,), generator=g)
        self.first_s = self.step()  # builds oneDNN primitives (and compiles); timed apart

    def step(self) -> float:
        start = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            loss = torch.nn.functional.cross_entropy(self.net(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--variants", default="auto", help="comma-separated subset (the baseline always runs), "
                        "all, or auto = all but bf16 on a CPU without bf16 kernels (emulated: minutes a step)")
    args = parser.parse_args()
    kernels = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if args.variants == "auto":
        chosen = {n for n, (bf16, _, _) in VARIANTS.items() if kernels or not bf16}
    elif args.variants == "all":
        chosen = set(VARIANTS)
    else:
        chosen = {"fp32_cl", *args.variants.split(",")}
    names = [n for n in VARIANTS if n in chosen and not (args.no_compile and VARIANTS[n][2])]
    loops: dict[str, Loop] = {}
    compile_error = None
    for name in names:
        try:
            loops[name] = Loop(*VARIANTS[name])
            print(f"{name}: first step {loops[name].first_s:.2f} s", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - a compiler missing here is a finding, not a crash
            compile_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    times: dict[str, list[list[float]]] = {n: [] for n in loops}
    for _ in range(args.rounds):
        for n in loops:
            times[n].append([])
        for _ in range(args.steps):
            for n, loop in loops.items():
                times[n][-1].append(loop.step())
        print(f"round {len(times['fp32_cl'])}: " + ", ".join(f"{n} {statistics.median(t[-1]):.2f} s"
                                                          for n, t in times.items()), file=sys.stderr, flush=True)
    base = "fp32_cl"
    ratios = {n: [statistics.median(b) / statistics.median(v) for b, v in zip(times[base], times[n], strict=True)]
              for n in loops if n != base}
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    flags = sorted({f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
                    if f in Path("/proc/cpuinfo").read_text()}) if Path("/proc/cpuinfo").exists() else []
    out: dict[str, Any] = {
        "model": "hairnet_cifar", "batch": BATCH, "steps_per_round": args.steps, "rounds": args.rounds,
        "cpu": cpu, "flags": flags, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "bf16_kernels": kernels,
        "skipped": [n for n in VARIANTS if n not in loops],
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "baseline_img_s": round(BATCH / statistics.median(t for r in times[base] for t in r), 1),
        "img_s": {n: round(BATCH / statistics.median(t for r in times[n] for t in r), 1) for n in loops},
        "ratio_to_fp32_cl": {n: round(statistics.median(r), 3) for n, r in ratios.items()},
        "ratios_per_round": {n: [round(x, 3) for x in r] for n, r in ratios.items()},
        "first_step_s": {n: round(loop.first_s, 2) for n, loop in loops.items()},
    }
    if compile_error:
        out["compile_error"] = compile_error
    print(json.dumps(out))


if __name__ == "__main__":
    main()
