"""hairlab: plugin-based experiment orchestration for efficient convolutional networks."""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT", "__version__", "hookimpl", "hookspec"]

__version__ = "0.1.0"

#: The pluggy project name; also the setuptools entry-point group plugins register under.
PROJECT = "hairlab"

#: Decorator for hook implementations, as a plugin package uses it: ``@hairlab.hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT)
#: Decorator for hook specifications (only :mod:`hairlab.hookspecs` uses it).
hookspec = pluggy.HookspecMarker(PROJECT)
