"""The ``hairlab`` command line.

Kept import-light on purpose: ``hairlab --help`` must not import torch or mlflow, so every
subcommand imports what it needs inside its body.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hairlab import __version__
from hairlab.errors import HairlabError

app = typer.Typer(
    name="hairlab",
    help="Experiment orchestration for efficient convolutional networks (HairNet and beyond).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hairlab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """hairlab: run sweeps, track them in MLflow, and predict per-layer hardware cost."""


@app.command(context_settings={**_PASSTHROUGH, "help_option_names": []}, add_help_option=False)
def run(ctx: typer.Context) -> None:
    """Run a Hydra job or sweep: every argument goes to Hydra unchanged.

    Examples: hairlab run optimizer=sgd optimizer.lr=0.1 | hairlab run -m optimizer=adam,sgd |
    hairlab run +experiment=adam_vs_sgd | hairlab run --cfg job | hairlab run --help (Hydra's help).
    """
    from hairlab import hydra_app
    from hairlab.runner import task_function

    hydra_app.run(list(ctx.args), task_function)


@app.command("hw-report", context_settings=_PASSTHROUGH)
def hw_report(
    ctx: typer.Context,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to FILE.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a roofline chart (PNG) to FILE.")] = None,
    compare_paper: Annotated[
        bool, typer.Option("--compare-paper", help="Show the faithful mode beside the paper's appendix.")
    ] = False,
    measure: Annotated[
        bool, typer.Option("--measure", help="Also time the model on the local device, per layer.")
    ] = False,
) -> None:
    """Per-layer cost of a model on a hardware target.

    Extra arguments are Hydra overrides, e.g.
    model=hairnet_imagenet hardware=paper2012 hardware.mode=faithful
    """
    from hairlab.commands.hw_report import hw_report as impl

    impl(list(ctx.args), fmt=fmt.value, output=output, plot=plot, compare_paper=compare_paper, measure=measure)


@app.command("plugins")
def plugins_cmd() -> None:
    """Table of every plugin: kinds, what it provides, distribution, version, status."""
    from hairlab.commands.plugins import show_plugins

    show_plugins()


@app.command("list")
def list_cmd(
    kind: Annotated[str, typer.Argument(help="blocks, heads, optimizers, hardware or datasets.")],
    pattern: Annotated[str, typer.Argument(help="fnmatch pattern, e.g. 'dw*'.")] = "*",
) -> None:
    """List the entries of one plugin kind, with a one-line description each."""
    from hairlab.commands.plugins import list_entries

    list_entries(kind, pattern)


@app.command("ui")
def ui(
    host: Annotated[str, typer.Option(help="Address to bind; keep 127.0.0.1 unless you mean to share it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    tracking_uri: Annotated[
        Optional[str], typer.Option("--tracking-uri", help="Store to show (default: $MLFLOW_TRACKING_URI or ./mlflow.db).")
    ] = None,
) -> None:
    """Start the MLflow UI on the configured store and print its address."""
    from hairlab.commands.tracking import ui as impl

    impl(host=host, port=port, tracking_uri=tracking_uri)


@app.command("compare")
def compare(
    experiment: Annotated[Optional[str], typer.Argument(help="MLflow experiment name (default: the newest).")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Metric to sort by, e.g. val/acc.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="Write comparison curves (PNG) into this directory.")
    ] = None,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="Store to read.")] = None,
    group_seeds: Annotated[
        bool, typer.Option("--group-seeds/--each-run",
                           help="Plot the seeds of one configuration as a mean line with a min-max band.")
    ] = True,
) -> None:
    """Compare the runs of an experiment: key params, final metrics, status."""
    from hairlab.commands.tracking import compare as impl

    impl(experiment=experiment, sort=sort, fmt=fmt.value, plot=plot, tracking_uri=tracking_uri,
         group_seeds=group_seeds)


def entrypoint() -> None:
    """Console-script entry: turn :class:`HairlabError` into one line and exit status 2."""
    try:
        app()
    except HairlabError as exc:
        typer.echo(f"hairlab: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    entrypoint()
