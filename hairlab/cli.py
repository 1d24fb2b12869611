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
    compare_reference: Annotated[
        bool, typer.Option("--compare-reference",
                           help="Show the report beside the printed table the target reproduces, cell by cell.")
    ] = False,
    compare_paper: Annotated[
        bool, typer.Option("--compare-paper", hidden=True, help="Deprecated: --compare-reference.")
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
    from hairlab.plugin_manager import get_host

    if compare_paper:
        typer.echo("hairlab: warning: --compare-paper is deprecated; use --compare-reference", err=True)
    impl(list(ctx.args), get_host(), fmt=fmt.value, output=output, plot=plot,
         compare_reference=compare_reference or compare_paper, measure=measure)


@app.command("plugins")
def plugins_cmd(
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """Every plugin: kinds, what it provides, distribution, version, status (and why)."""
    from hairlab.commands.plugins import show_plugins
    from hairlab.plugin_manager import get_host

    show_plugins(get_host(), fmt.value)


@app.command("list")
def list_cmd(
    kind: Annotated[str, typer.Argument(help="blocks, heads, optimizers, hardware or datasets.")],
    pattern: Annotated[
        str, typer.Argument(help="An entry's name (shows its options), or an fnmatch pattern, e.g. 'dw*'.")
    ] = "*",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """List the entries of one plugin kind; `hairlab list KIND NAME` shows one entry's options."""
    from hairlab.commands.plugins import list_entries
    from hairlab.plugin_manager import get_host

    list_entries(get_host(), kind, pattern, fmt.value)


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


@app.command("compare", context_settings={"allow_extra_args": True})
def compare(
    ctx: typer.Context,
    experiment: Annotated[Optional[str], typer.Argument(help="MLflow experiment name (default: the newest).")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Metric to sort by, e.g. val/acc or test/acc.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="Write comparison curves (PNG) into this directory.")
    ] = None,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="Store to read.")] = None,
    group_seeds: Annotated[
        bool, typer.Option("--group-seeds/--each-run",
                           help="Plot the seeds of one configuration as a mean line with a min-max band.")
    ] = True,
    columns: Annotated[
        Optional[str], typer.Option("--columns", "-c",
                                    help="Columns to show, comma-separated names or patterns, e.g. 'run,lr,*acc'.")
    ] = None,
    pareto: Annotated[
        Optional[list[str]], typer.Option(
            "--pareto", help="Show the Pareto front of these objectives instead, e.g. --pareto val/acc:max "
                             "hw/paper2012/latency_s:min (--plot DIR then draws it: pareto.png).")
    ] = None,
    reference: Annotated[
        Optional[list[str]], typer.Option(
            "--reference", help="A run (id or name, any experiment) drawn as a labelled reference point on the "
                                "--pareto plot; repeatable.")
    ] = None,
) -> None:
    """Compare the runs of an experiment: the params that vary, final metrics, status."""
    from hairlab.commands.tracking import compare as impl

    specs, extra = list(pareto or []), list(ctx.args)
    if specs and experiment is not None and ":" in experiment:  # `compare --pareto a:max b:min`: no experiment
        extra, experiment = [experiment, *extra], None
    if extra and not specs:
        raise HairlabError(f"unexpected argument {extra[0]!r}; `hairlab compare --help` lists the options")
    impl(experiment=experiment, sort=sort, fmt=fmt.value, plot=plot, tracking_uri=tracking_uri,
         group_seeds=group_seeds, columns=columns, pareto=specs + extra or None, references=reference)


def entrypoint() -> None:
    """Console-script entry: turn :class:`HairlabError` into one line and exit status 2.

    A closed pipe (``hairlab list blocks | head -1``) ends the command quietly, as it would
    a shell tool, instead of printing a BrokenPipeError at exit.
    """
    try:
        try:
            app()
        except HairlabError as exc:
            typer.echo(f"hairlab: {exc}", err=True)
            sys.exit(exc.exit_code)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a tool the pipe closed on


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout already gone or not a real file
        pass


if __name__ == "__main__":
    entrypoint()
