"""What a run records about its data: facts as tags, load timings as metrics, splits as MLflow inputs.

Params are the config only (the MLflow compare view's "diff only" list and the sweep summary
must show what the user chose, not how long a cache took to load), so ``DataModule.info()``
becomes ``data.<key>`` tags, its timings (:data:`hairlab.data.base.TIMINGS`) ``data/<key>``
metrics, and each split one MLflow dataset input (``mlflow.data``, context ``training``,
``validation`` or ``test``) with its name, digest and size, which fills the UI's Dataset column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hairlab.data.base import TIMINGS, source_identity, split_digest

#: Tag prefix of the data facts.
TAG_PREFIX = "data."
#: Metric prefix of the data load timings.
METRIC_PREFIX = "data/"
#: ``info()`` keys whose value identifies the source data; mirrored as ``hairlab.data_checksum``.
CHECKSUM_SUFFIXES = ("checksum", "sha256", "md5")
CHECKSUM_TAG = "hairlab.data_checksum"
#: A split and the MLflow input context it is logged under.
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def fact_text(value: Any) -> str:
    """A fact as a tag value: lists compact (``[0.49,0.48]``), floats to 6 significant digits."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value) + "]"
    from hairlab.tracking.params import format_value

    return format_value(value)


def data_facts(info: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, float]]:
    """``info()`` as (tags, metrics): timings become ``data/<key>`` metrics, the rest ``data.<key>`` tags."""
    tags: dict[str, str] = {}
    metrics: dict[str, float] = {}
    for key, value in info.items():
        if key in TIMINGS and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(float(value)):
                metrics[f"{METRIC_PREFIX}{key}"] = float(value)
            continue
        text = fact_text(value)
        tags[f"{TAG_PREFIX}{key}"] = text
        if key.endswith(CHECKSUM_SUFFIXES) and text:
            tags[CHECKSUM_TAG] = text  # the data's identity, searchable (tags.hairlab.data_checksum)
    return tags, metrics


def split_sizes(data: Any) -> dict[str, int]:
    """Examples per existing split (empty splits left out)."""
    sizes = {split: int(data.num_examples(split)) for split in CONTEXTS}
    return {split: n for split, n in sizes.items() if n > 0}


def digest(data: Any, split: str, info: Mapping[str, Any]) -> str:
    """The data module's own digest of ``split`` when it has one, else one from ``info`` and the size."""
    own = getattr(data, "digest", None)
    if callable(own):
        return str(own(split))
    return split_digest(source_identity(info), split, int(data.num_examples(split)))


def dataset_inputs(data: Any, info: Mapping[str, Any] | None = None) -> list[Any]:
    """One ``mlflow.entities.DatasetInput`` per existing split, for ``MlflowClient.log_inputs``."""
    from hairlab.tracking.mlflow_inputs import split_input

    info = dict(data.info() if info is None else info)
    return [split_input(name=str(data.name), digest=digest(data, split, info), source=str(info.get("source") or ""),
                        context=CONTEXTS[split],
                        profile={"split": split, "num_examples": n, "num_classes": int(data.num_classes),
                                 "input_shape": list(data.input_shape)})
            for split, n in split_sizes(data).items()]
