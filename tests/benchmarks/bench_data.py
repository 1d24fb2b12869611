"""Input-pipeline benchmark: first decode vs cached start, and batch throughput.

Run as ``python tests/benchmarks/bench_data.py [--skip-decode] [--images N]``. Prints one
JSON object on one line:

- ``decode``: the real shared CIFAR-10 JPEG tarball (when present) decoded into a fresh
  cache with 1 and 2 worker processes, then the cached start; ratios to the cached start.
- ``batches``: img/s of hairlab's per-batch pipeline (random crop with padding 4,
  horizontal flip, normalization, channels_last, batch 128) against a conventional
  per-example pipeline (the same transforms applied image by image, then stacked, as a
  ``Dataset.__getitem__`` + collate would do), measured in the same run, with 1 torch
  thread and with one per core.
- ``augment``: img/s of the same pipeline (1 thread) for each augmentation option of
  docs/datasets.md (translate with zeros or reflect padding, random or alternating flip,
  cutout), so the cost of an option is read beside the default's.

Timings on a shared machine vary; the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def _cpu_s() -> float:
    """CPU seconds used by this process and its reaped children (decoder workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_decode() -> dict[str, object]:
    from hairlab_plugins.datasets.cifar10 import build

    out: dict[str, object] = {"source": str(REAL)}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            os.environ["HAIRLAB_CACHE"] = str(Path(tmp) / f"cache{workers}")
            t0, c0 = time.perf_counter(), _cpu_s()
            dm = build(root=str(REAL.parent), workers=workers, download=False)
            out[f"first_decode_s_workers{workers}"] = round(time.perf_counter() - t0, 2)
            out[f"first_decode_cpu_s_workers{workers}"] = round(_cpu_s() - c0, 2)
        t0, c0 = time.perf_counter(), _cpu_s()
        dm = build(root=str(REAL.parent), workers=2, download=False)
        cached = time.perf_counter() - t0
        out["cached_start_cpu_s"] = round(_cpu_s() - c0, 3)
        assert dm.info()["cache_hit"] is True
        out["cached_start_s"] = round(cached, 3)
        out["images"] = dm.num_examples("train") + dm.num_examples("test")
    for w in (1, 2):
        first = float(out[f"first_decode_s_workers{w}"])  # type: ignore[arg-type]
        out[f"ratio_first_decode_w{w}_to_cached"] = round(first / cached, 1)
    return out


def bench_batches(n: int, batch: int = 128, repeats: int = 3) -> dict[str, object]:
    import torch

    from hairlab.data.augment import Normalizer
    from hairlab.data.tensor import TensorDataModule

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    dm = TensorDataModule("bench", train=(x, y), test=(x[:10], y[:10]), num_classes=10, crop_padding=4,
                          hflip=True)
    norm = Normalizer(dm.normalizer.mean, dm.normalizer.std)

    def hairlab_epoch() -> int:
        seen = 0
        for xb, _ in dm.train_batches(batch, device="cpu", generator=g, memory_format=torch.channels_last):
            seen += len(xb)
        return seen

    def per_example_epoch() -> int:
        seen = 0
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, batch):
            images = []
            for i in perm[start:start + batch].tolist():
                img = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
                r, c = torch.randint(0, 9, (2,), generator=g).tolist()
                img = img[:, r:r + 32, c:c + 32]
                if torch.rand(1, generator=g).item() < 0.5:
                    img = img.flip(-1)
                images.append(img)
            xb = norm(torch.stack(images), torch.channels_last)
            seen += len(xb)
        return seen

    def rate(fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            seen = fn()
            best = min(best, time.perf_counter() - t0)
        return seen / best

    out: dict[str, object] = {"images": n, "batch": batch}
    # Batched ops run on torch's intra-op threads; per-example ops are too small to use them.
    # Both counts are reported: on a busy machine extra threads can cost more than they give.
    for threads in sorted({1, max(1, os.cpu_count() or 1)}):
        torch.set_num_threads(threads)
        ours, base = rate(hairlab_epoch), rate(per_example_epoch)
        out[f"threads_{threads}"] = {"hairlab_img_s": round(ours), "per_example_img_s": round(base),
                                     "ratio_hairlab_to_per_example": round(ours / base, 1)}
    return out


def bench_augment(n: int, batch: int = 128, repeats: int = 3) -> dict[str, object]:
    import torch

    from hairlab.data.tensor import TensorDataModule

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    variants = {
        "none": {"crop_padding": 0, "hflip": False},
        "crop4_flip (default)": {"crop_padding": 4, "hflip": True},
        "crop2_reflect_flip": {"crop_padding": 2, "pad_mode": "reflect", "hflip": True},
        "crop2_reflect_alternate": {"crop_padding": 2, "pad_mode": "reflect", "hflip": "alternate"},
        "crop4_flip_cutout8": {"crop_padding": 4, "hflip": True, "cutout": 8},
    }
    out: dict[str, object] = {"images": n, "batch": batch, "threads": 1}
    torch.set_num_threads(1)
    for name, kw in variants.items():
        dm = TensorDataModule("bench", train=(x, y), test=(x[:10], y[:10]), num_classes=10, **kw)
        best = float("inf")
        for epoch in range(1, repeats + 1):
            t0 = time.perf_counter()
            for _ in dm.train_batches(batch, device="cpu", generator=g, memory_format=torch.channels_last,
                                      epoch=epoch):
                pass
            best = min(best, time.perf_counter() - t0)
        out[f"{name}_img_s"] = round(n / best)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-decode", action="store_true", help="skip the real-data decode timing")
    parser.add_argument("--images", type=int, default=10_000, help="images per batch-throughput epoch")
    args = parser.parse_args()
    result: dict[str, object] = {"load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    result["batches"] = bench_batches(args.images)
    result["augment"] = bench_augment(args.images)
    if args.skip_decode:
        result["decode"] = "skipped (--skip-decode)"
    elif REAL.is_file():
        result["decode"] = bench_decode()
    else:
        result["decode"] = f"skipped: {REAL} is missing"
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))  # one line: `nox -s bench` reads the last line


if __name__ == "__main__":
    main()
