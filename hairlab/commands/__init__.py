"""Implementations of the CLI subcommands, imported lazily by :mod:`hairlab.cli`."""
