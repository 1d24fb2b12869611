"""Built-in datasets: ``cifar10``, ``imagefolder`` and ``synthetic``.

Each factory imports its module (and torch) only when a run asks for it, so listing
plugins stays fast. The config group ``dataset`` passes its keys (other than ``name``)
to the factory as keyword arguments.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from hairlab import hookimpl
from hairlab.errors import HairlabError
from hairlab.registry import Entry


def _factory(name: str) -> Callable[..., Any]:
    """A factory that imports ``hairlab_plugins.datasets.<name>`` only when called."""

    def factory(**options: Any) -> Any:
        build = importlib.import_module(f"{__name__}.{name}").build
        valid = [p for p in inspect.signature(build).parameters if p != "self"]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise HairlabError(
                f"dataset '{name}' has no option(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        return build(**options)

    factory.__name__ = f"build_{name}"
    return factory


@hookimpl
def hairlab_datasets() -> list[Entry]:
    return [
        Entry("synthetic", _factory("synthetic"),
              "Random class-prototype images of any shape, deterministic by seed (smoke tests).\n"
              "Each class is a random image plus per-example noise, so a model can learn it."),
        Entry("cifar10", _factory("cifar10"),
              "CIFAR-10 (32x32, 10 classes) from the official python batches or tarball, or a\n"
              "class-folder image tree or tarball; downloaded with checksum when online."),
        Entry("imagefolder", _factory("imagefolder"),
              "Any train/<class>/* and val/<class>/* image tree or tarball (ImageNet layout),\n"
              "resized to image_size; cached in memory when small, streamed when large."),
    ]
