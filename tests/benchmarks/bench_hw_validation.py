"""Validate the host target against this CPU: predicted vs measured latency on a model zoo.

Run: ``python tests/benchmarks/bench_hw_validation.py --output test-output/hw_validation.md``
(also in ``nox -s bench``). For every model of the zoo, at batch 1 and 8, with 1 thread and with
all cores, it predicts with ``hardware=host`` (the calibration for that thread count, cached;
measured the first time, under a minute each) and measures with ``hw-report --measure``'s
method (``hairlab.costmodel.measure``: the total without hooks, median of repeats; each layer
in place, the median over passes, hooks' own cost taken out; channels_last).

The figures are nn-Meter's (Zhang et al., MobiSys 2021): the share of cases (model, batch,
threads) whose predicted total is within +-10% of the measured one, and the share of layers
within +-25% (nn-Meter reports +-10%; per layer a CPU's noise is larger, so the issue's goal is
+-25%), with the worst layers by kind. Each case also gets the measurement's noise (IQR /
median of its repeats) and the load average. The clock: one thread's CPU time with 1 thread
(robust to other processes on a shared machine), wall time with more threads (CPU time, all
threads' work, reported beside it). Writes the markdown table to ``--output`` and the JSON
beside it (``.json``); prints progress on stderr and a JSON summary as its last stdout line.
A model config that does not exist (yet) is skipped with a note. About 5-10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "plugins" / "examples" / "hairlab-example-plugin"
ZOO = ("hairnet_imagenet", "hairnet_cifar", "alexnet", "mobilenet_v1", "mobilenet_v2", "example_resnet")
CASE_TOL, LAYER_TOL = 0.10, 0.25


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", file=sys.stderr, flush=True)


def build(name: str, host: Any) -> tuple[Any, tuple[int, int, int]] | None:
    """The zoo model ``name`` and its input shape, or None if its config does not exist."""
    from hairlab.models import build_model, model_input_shape

    if name == "example_resnet":
        from omegaconf import OmegaConf

        path = EXAMPLE / "hairlab_example" / "conf" / "model" / "example_resnet.yaml"
        if not path.exists():
            return None
        raw = OmegaConf.to_container(OmegaConf.load(path))
        assert isinstance(raw, dict)
        raw.pop("defaults", None)
        raw["num_classes"] = 10
        return build_model(raw, host), tuple(raw["input_shape"])  # type: ignore[return-value]
    if not (ROOT / "conf" / "model" / f"{name}.yaml").exists():
        return None
    from hairlab.hydra_app import compose

    cfg = compose([f"model={name}"])
    return build_model(cfg.model, host), model_input_shape(cfg.model)


def plugin_host() -> Any:
    """The built-in plugins plus the example plugin (registered from its source tree if not installed)."""
    from hairlab.plugin_manager import PluginHost

    host = PluginHost()
    host.load_entrypoints()
    if "example" not in host.records and EXAMPLE.exists():
        sys.path.insert(0, str(EXAMPLE))
        import hairlab_example

        host.register(hairlab_example, name="example")
    host.collect()
    return host


def run_case(model: Any, shape: tuple[int, int, int], name: str, batch: int, threads: int, host: Any,
             repeats: int) -> dict[str, Any]:
    from hairlab.costmodel.engine import estimate
    from hairlab.costmodel.hostfit import layer_dims, mark_previous
    from hairlab.costmodel.layers import extract_layers
    from hairlab.costmodel.measure import attach, measure_model

    target = host.registry("hardware").create("host", threads=threads, batch_size=batch)
    layers = extract_layers(model, shape)
    report = estimate(layers, target, model=name, input_shape=shape)
    # The sizes the host model saw per row (same row order: the host target fuses nothing by default).
    dims = [layer_dims(r, batch) for r in mark_previous([x.copy() for x in layers])]
    if len(dims) != len(report.rows):
        dims = [{} for _ in report.rows]
    m = measure_model(model, shape, batch_size=batch, threads=threads, repeats=repeats)
    measured = attach(report, m)
    predicted = report.totals["latency_s"]
    rows = [{"layer": r.layer_name, "module": r.module, "kind": r.kind, "predicted_s": r.total_time_s,
             "measured_s": meas, "ratio": r.total_time_s / meas if meas else None, "dims": d}
            for r, meas, d in zip(report.rows, measured, dims, strict=True)]
    layers = [x for x in rows if x["measured_s"]]
    return {"model": name, "batch": batch, "threads": threads, "predicted_s": predicted,
            "measured_s": m.total_median_s, "measured_best_s": m.total_s, "clock": m.clock,
            "wall_median_s": m.wall_median_s, "cpu_median_s": m.cpu_median_s, "noise_iqr": m.total_iqr,
            "wall_noise_iqr": m.wall_iqr, "ratio": predicted / m.total_median_s,
            "layer_sum_over_total": sum(x["measured_s"] for x in layers) / m.total_median_s,
            "loadavg": m.loadavg, "layers": layers, "unmeasured_rows": len(rows) - len(layers),
            "calibration": list(target.notes)}


def summarize(cases: list[dict[str, Any]]) -> dict[str, Any]:
    layers = [x for c in cases for x in c["layers"]]
    within = [c for c in cases if abs(c["ratio"] - 1) <= CASE_TOL]
    lwithin = [x for x in layers if abs(x["ratio"] - 1) <= LAYER_TOL]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for c in cases:
        for x in c["layers"]:
            by_kind.setdefault(x["kind"], []).append({**x, "case": f"{c['model']} b{c['batch']} t{c['threads']}"})
    kinds = {}
    for kind, items in sorted(by_kind.items()):
        worst = max(items, key=lambda x: abs(x["ratio"] - 1))
        kinds[kind] = {"layers": len(items), "within_25pct": sum(abs(x["ratio"] - 1) <= LAYER_TOL for x in items)
                       / len(items), "median_ratio": statistics.median(x["ratio"] for x in items),
                       "worst_ratio": worst["ratio"], "worst": f"{worst['case']} {worst['layer']} ({worst['module']})"}
    per_threads = {}
    for t in sorted({c["threads"] for c in cases}):
        cs = [c for c in cases if c["threads"] == t]
        ls = [x for c in cs for x in c["layers"]]
        per_threads[t] = {"cases_within_10pct": sum(abs(c["ratio"] - 1) <= CASE_TOL for c in cs) / len(cs),
                          "layers_within_25pct": sum(abs(x["ratio"] - 1) <= LAYER_TOL for x in ls) / max(1, len(ls))}
    again = [c for c in cases if "remeasured_over_measured" in c]
    ceiling = (sum(abs(c["remeasured_over_measured"] - 1) <= CASE_TOL for c in again) / len(again)) if again else None
    return {"cases": len(cases), "cases_within_10pct": len(within) / max(1, len(cases)),
            "remeasured_within_10pct": ceiling,
            "layers": len(layers), "layers_within_25pct": len(lwithin) / max(1, len(layers)),
            "by_threads": per_threads, "by_kind": kinds}


def markdown(result: dict[str, Any]) -> str:
    s, facts = result["summary"], result["facts"]
    lines = [f"Host model validation, {facts['date']}, {facts['cpu']}, torch {facts['torch']}, "
             f"load average {facts['load_before']} before / {facts['load_after']} after, {facts['seconds']:.0f} s.",
             "",
             f"**{s['cases_within_10pct']:.0%} of {s['cases']} cases within +-10%** on the total; "
             f"**{s['layers_within_25pct']:.0%} of {s['layers']} layers within +-25%**. "
             + "; ".join(f"{t} thread(s): {v['cases_within_10pct']:.0%} of cases, {v['layers_within_25pct']:.0%} "
                         "of layers" for t, v in s["by_threads"].items()),
             "",
             *([f"Noise ceiling: measured again after the whole pass, **{s['remeasured_within_10pct']:.0%} of the "
                "cases agree with their own first measurement within +-10%**; no prediction can do better than "
                "the machine's agreement with itself.", ""] if s.get("remeasured_within_10pct") is not None else []),
             "| model | batch | threads | predicted ms | measured ms (median) | clock | noise (IQR/median) "
             "| predicted/measured | layers within 25% | wall ms | process CPU ms | load | measured again ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["cases"]:
        lw = sum(abs(x["ratio"] - 1) <= LAYER_TOL for x in c["layers"]) / max(1, len(c["layers"]))
        load = f"{c['loadavg'][0]:.2f}" if c["loadavg"] else "?"
        lines.append(f"| {c['model']} | {c['batch']} | {c['threads']} | {c['predicted_s'] * 1e3:.3f} | "
                     f"{c['measured_s'] * 1e3:.3f} | {c['clock']} | {c['noise_iqr']:.1%} | {c['ratio']:.2f} | "
                     f"{lw:.0%} | {c['wall_median_s'] * 1e3:.3f} | {c['cpu_median_s'] * 1e3:.3f} | {load} | "
                     + (f"{c['remeasured_s'] * 1e3:.3f} |" if "remeasured_s" in c else "- |"))
    lines += ["", "| kind | layers | within 25% | median predicted/measured | worst | worst layer |",
              "|---|---|---|---|---|---|"]
    for kind, k in s["by_kind"].items():
        lines.append(f"| {kind} | {k['layers']} | {k['within_25pct']:.0%} | {k['median_ratio']:.2f} | "
                     f"{k['worst_ratio']:.2f} | {k['worst']} |")
    if result["skipped"]:
        lines += ["", "Skipped (no config): " + ", ".join(result["skipped"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", type=Path, default=ROOT / "test-output" / "hw_validation.md",
                        help="markdown table (the JSON goes beside it, .json)")
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", default="", help="comma list; default 1 and all cores")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--refresh", action="store_true", help="calibrate again even if cached")
    args = parser.parse_args()

    import torch

    from hairlab.costmodel.calibrate import calibration, cpu_model
    from hairlab.costmodel.measure import measure_model

    cores = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",") if t] or sorted({1, cores})
    batches = [int(b) for b in args.batches.split(",") if b]
    started, load_before = time.perf_counter(), os.getloadavg()
    host = plugin_host()
    models, skipped = {}, []
    for name in [m for m in args.models.split(",") if m]:
        built = build(name, host)
        if built is None:
            log(f"note: model config {name!r} does not exist (yet): skipped")
            skipped.append(name)
        else:
            models[name] = built
    cases = []
    for t in threads:
        log(f"calibration for {t} thread(s) ({'refresh' if args.refresh else 'cached if present'})")
        cal = calibration(t, refresh=args.refresh)
        errs = {k: round(v.get("median_rel_err", 0), 2) for k, v in (cal.get("fit") or {}).items()}
        log(f"  calibration {cal.get('measured_at')} took {cal.get('seconds', '?')} s, load {cal.get('loadavg')}; "
            f"median fit error on its own samples per kind {errs} (above ~0.4: too noisy to trust)")
        for name, (model, shape) in models.items():
            for b in batches:
                case = run_case(model, shape, name, b, t, host, args.repeats)
                log(f"{name} batch {b} threads {t}: predicted {case['predicted_s'] * 1e3:.2f} ms, measured "
                    f"{case['measured_s'] * 1e3:.2f} ms ({case['clock']}, noise {case['noise_iqr']:.1%}), "
                    f"ratio {case['ratio']:.2f}")
                cases.append(case)
        # The noise ceiling: every case's total measured again, minutes later. A predictor cannot
        # agree with the machine more often than the machine agrees with itself.
        for case in [c for c in cases if c["threads"] == t]:
            model, shape = models[case["model"]]
            again = measure_model(model, shape, batch_size=case["batch"], threads=t, repeats=args.repeats)
            case["remeasured_s"] = again.total_median_s
            case["remeasured_over_measured"] = again.total_median_s / case["measured_s"]
            log(f"{case['model']} batch {case['batch']} threads {t}: measured again {again.total_median_s * 1e3:.2f} ms "
                f"({case['remeasured_over_measured']:.2f}x the first)")
    result = {"facts": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu_model(), "torch": torch.__version__,
                        "cores": cores, "load_before": [round(x, 2) for x in load_before],
                        "load_after": [round(x, 2) for x in os.getloadavg()],
                        "seconds": time.perf_counter() - started, "repeats": args.repeats},
              "summary": summarize(cases), "cases": cases, "skipped": skipped}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(result))
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=1))
    log(f"wrote {args.output} and {args.output.with_suffix('.json')}")
    s = result["summary"]
    print(json.dumps({"cases_within_10pct": s["cases_within_10pct"], "layers_within_25pct": s["layers_within_25pct"],
                      "remeasured_within_10pct": s["remeasured_within_10pct"],
                      "cases": s["cases"], "layers": s["layers"], "by_threads": s["by_threads"],
                      "load_before": result["facts"]["load_before"], "load_after": result["facts"]["load_after"],
                      "seconds": round(result["facts"]["seconds"]), "output": str(args.output)}))


if __name__ == "__main__":
    main()
