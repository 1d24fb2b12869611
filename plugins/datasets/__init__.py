"""Built-in datasets: ``cifar10``, ``imagefolder`` and ``synthetic``.

Each factory imports its module (and torch) only when a run asks for it, so listing
plugins stays fast. The config group ``dataset`` passes its keys (other than ``name``)
to the factory as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

from hairlab import hookimpl
from hairlab.registry import Entry


def _schema(name: str, build: Callable[..., Any]) -> type:
    """A dataclass of ``build``'s keyword options, for hairlab's option checker."""
    hints = typing.get_type_hints(build)
    fields = [(p.name, hints.get(p.name, Any), dataclasses.field(default=p.default))
              for p in inspect.signature(build).parameters.values()]
    return dataclasses.make_dataclass(f"{name}_options", fields)


def _factory(name: str) -> Callable[..., Any]:
    """A factory that imports ``hairlab_plugins.datasets.<name>`` only when called.

    Options are checked against the module's ``build`` signature first, so
    ``dataset.workers=abc`` or a misspelt key is one line naming the key and the fix.
    """

    def factory(**options: Any) -> Any:
        from hairlab.models.options import validate_options

        build = importlib.import_module(f"{__name__}.{name}").build
        entry = Entry(name, build, "", _schema(name, build))
        return build(**validate_options(entry, options, "dataset"))

    factory.__name__ = f"build_{name}"
    return factory


@hookimpl
def hairlab_datasets() -> list[Entry]:
    return [
        Entry("synthetic", _factory("synthetic"),
              "Random class-prototype images of any shape, deterministic by seed (smoke tests).\n"
              "Each class is a random image plus per-example noise, so a model can learn it."),
        Entry("cifar10", _factory("cifar10"),
              "CIFAR-10 (32x32, 10 classes): official batches or tarball, or a class-folder tree/tarball.\n"
              "Decoded once into a cached tensor file; downloaded with checksum when online."),
        Entry("imagefolder", _factory("imagefolder"),
              "Any train/<class>/*, val/<class>/* image tree or tarball (ImageNet layout), resized.\n"
              "Decoded once and held in memory when small; streamed by DataLoader workers when large."),
    ]
