"""``hairlab hw-report``: per-layer cost of a model on a hardware target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hairlab.errors import HairlabError

if TYPE_CHECKING:
    from hairlab.costmodel.engine import Report
    from hairlab.plugin_manager import PluginHost


def build_report(overrides: list[str], host: PluginHost, *,
                 compare_reference: bool = False) -> tuple[Report, Any, Any]:
    """Compose the config, build model and target, extract and cost: ``(report, model, cfg)``."""
    from hairlab.costmodel.api import target_from_config
    from hairlab.costmodel.engine import estimate
    from hairlab.costmodel.layers import extract_layers
    from hairlab.hydra_app import compose
    from hairlab.models import build_model, model_input_shape

    cfg = compose(list(overrides))
    if cfg.get("hardware") is None:  # (an unknown hardware=NAME is already an error in compose)
        raise HairlabError("no hardware target configured; add hardware=NAME (see `hairlab list hardware`)")
    if cfg.get("model") is None:
        raise HairlabError("no model configured; add model=NAME (e.g. model=hairnet_imagenet)")
    target = target_from_config(cfg.hardware, host)
    if compare_reference:
        if target.reference is None:
            raise HairlabError(f"hardware '{target.name}' has no printed reference to compare with; "
                               "--compare-reference needs a target that ships one (see docs/hw-report.md)")
        if target.reference.options:  # the reference's own settings, e.g. paper2012's faithful mode
            target = target_from_config(cfg.hardware, host, **target.reference.options)
    shape = target.input_size or model_input_shape(cfg.model)
    model = build_model(cfg.model, host, input_shape=shape)
    layers = extract_layers(model, shape)
    name = str(cfg.model.get("name", "model"))
    return estimate(layers, target, model=name, input_shape=shape), model, cfg


def hw_report(overrides: list[str], host: PluginHost, *, fmt: str = "table", output: Path | None = None,
              plot: Path | None = None, compare_reference: bool = False, measure: bool = False) -> None:
    """Print (or write) the report; optionally plot, compare with the target's reference, and measure."""
    from rich.console import Console

    from hairlab.costmodel import render

    if fmt not in render.FORMATS:
        raise HairlabError(f"--format {fmt!r} is unknown; choose one of {', '.join(render.FORMATS)}")
    report, model, _ = build_report(overrides, host, compare_reference=compare_reference)
    console = Console(width=max(Console().width, 200))
    if measure:
        from hairlab.costmodel.measure import attach, measure_model

        t = report.target
        attach(report, measure_model(model, report.input_shape, batch_size=t.batch_size, threads=t.threads))
    if fmt == "table":
        if output:
            with Path(output).open("w") as fh:
                render.print_table(report, Console(file=fh, width=240, no_color=True))
        else:
            render.print_table(report, console)
    else:
        text = {"csv": render.to_csv, "json": render.to_json, "markdown": render.to_markdown}[fmt](report)
        if output:
            Path(output).write_text(text)
        else:
            print(text, end="")
    if output:
        console.print(f"wrote {output}", style="dim")
    if plot:
        from hairlab.costmodel.roofline import plot_roofline

        console.print(f"wrote roofline chart {plot_roofline(report, plot)}", style="dim")
    ref = report.target.reference
    if compare_reference and ref is not None:  # build_report refused a target without one
        from hairlab.costmodel.compare import load_reference, side_by_side

        pairs = side_by_side(report, load_reference(ref.table))
        render.print_comparison(report, pairs, ref.total_s, console, title=ref.title)
