"""A split as an ``mlflow.data`` dataset: metadata only (name, digest, source, profile), never the examples.

MLflow's :class:`~mlflow.data.meta_dataset.MetaDataset` carries name, digest and source but no
profile; :class:`SplitDataset` adds the profile (split, size, classes, input shape) that the
UI's dataset panel shows. Imported only when a run is logged to MLflow.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT


class SplitDataset(MetaDataset):
    """A metadata-only dataset with a profile."""

    def __init__(self, *, source: DatasetSource, name: str, digest: str, profile: dict[str, Any]) -> None:
        self._profile = profile
        super().__init__(source=source, name=name, digest=digest)

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        config = super().to_dict()
        config["profile"] = json.dumps(self._profile)
        return config


def source_of(source: str) -> DatasetSource:
    """A local path as MLflow's local source; anything else (``generated (seed 0, ...)``) as a code source."""
    if source.startswith("/"):
        try:
            return resolve_dataset_source(source)
        except Exception:  # noqa: BLE001 - MLflow's registry may refuse an odd path; keep it as text
            pass
    return CodeDatasetSource(tags={"source": source} if source else {})


def split_input(*, name: str, digest: str, source: str, context: str, profile: dict[str, Any]) -> DatasetInput:
    """The ``DatasetInput`` of one split, tagged with its context (``training``, ``validation``, ``test``)."""
    dataset = SplitDataset(source=source_of(source), name=name, digest=digest, profile=profile)
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
