"""The tracking interface the training engine logs through.

The engine and the training job only ever call these methods, so MLflow (or anything else)
plugs in behind it without the engine knowing. :class:`LocalTracker` is the always-available backend: it
writes ``metrics.jsonl``, ``params.json`` and ``tags.json`` into the Hydra job directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tracker(Protocol):
    """What a training job reports, and where to."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_dataset(self, data: Any) -> None:
        """Record the job's :class:`~hairlab.data.DataModule`: facts as tags, load timings as metrics."""
        ...

    def log_model(self, model: Any, input_example: Any) -> None:
        """Keep the trained model (``tracking.log_model=true``); ``input_example`` is a small input batch."""
        ...

    def close(self, status: str = "FINISHED") -> None: ...


class LocalTracker:
    """Writes everything as JSON files under ``directory`` (the job's output dir)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.status: str | None = None
        self._metrics = (self.directory / "metrics.jsonl").open("a", encoding="utf-8")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)
        (self.directory / "params.json").write_text(json.dumps(self.params, indent=1, default=str))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        row = {"step": step, "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})
        (self.directory / "tags.json").write_text(json.dumps(self.tags, indent=1))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Artifacts already live in the job directory; nothing to copy."""

    def log_dataset(self, data: Any) -> None:
        from hairlab.tracking.inputs import data_facts

        tags, metrics = data_facts(data.info())
        self.set_tags(tags)
        if metrics:
            self.log_metrics(metrics, step=0)

    def log_model(self, model: Any, input_example: Any) -> None:
        """The job's checkpoints are the local record of the model."""

    def close(self, status: str = "FINISHED") -> None:
        self.status = status
        self.set_tags({"status": status})
        self._metrics.close()


class NullTracker:
    """Records nothing: the tracker of data-parallel ranks other than 0, which own no run."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_dataset(self, data: Any) -> None: ...

    def log_model(self, model: Any, input_example: Any) -> None: ...

    def close(self, status: str = "FINISHED") -> None: ...


def read_metrics(directory: str | Path) -> list[dict[str, float]]:
    """Rows of a job's ``metrics.jsonl`` (tests and reports)."""
    path = Path(directory) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
