"""The schema of the ``tracking`` config group: it is the ``tracking/mlflow`` and ``tracking/local`` nodes.

One dataclass so every tracking option is defined once, with its type, default and help;
:mod:`hairlab.contract` registers it in Hydra's ConfigStore. Ranges are checked here so a
bad value is refused before any run exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class TrackingConfig:
    """Where and how a job's run is recorded."""

    backend: str = field(
        default="mlflow", metadata={"help": "mlflow (the store of record) or local (JSON files in the job dir)"}
    )
    uri: Optional[str] = field(
        default=None,
        metadata={"help": "tracking URI; null: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the launch directory"},
    )
    experiment: Optional[str] = field(
        default=None, metadata={"help": "MLflow experiment; null: the +experiment=NAME in use, else 'hairlab'"}
    )
    run_name: Optional[str] = field(
        default=None, metadata={"help": "the run's name; null: the swept overrides (in a sweep every job gets this name)"}
    )
    flush_interval_s: float = field(default=2.0, metadata={"help": "seconds between batched writes to the store"})
    log_artifacts: bool = field(
        default=True, metadata={"help": "upload the job's .hydra/ files, log, resolved config and curves at the end"}
    )
    plots: bool = field(default=True, metadata={"help": "render learning-curve plots as artifacts"})
    log_checkpoint: bool = field(default=False, metadata={"help": "also upload checkpoints/last.pt as an artifact"})
    log_model: bool = field(
        default=False,
        metadata={"help": "log the trained model with mlflow.pytorch (signature, input example), loadable with "
                          "mlflow.pytorch.load_model"},
    )
    system_metrics: bool = field(
        default=True,
        metadata={"help": "record CPU, memory (and GPU) use as system/* metrics with MLflow's system metrics monitor"},
    )
    system_metrics_interval_s: float = field(
        default=10.0, metadata={"help": "seconds between system-metrics samples (each sample is one store write)"}
    )
    fail_on_diverged: bool = field(
        default=True, metadata={"help": "a diverged job makes the sweep exit non-zero, like a failed one"}
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "skip jobs whose job key already has a FINISHED run; retrain KILLED/FAILED ones from their checkpoint"
        },
    )
    heartbeat_s: float = field(
        default=30.0, metadata={"help": "seconds between refreshes of the run's hairlab.heartbeat tag"}
    )
    stale_after_s: float = field(
        default=600.0,
        metadata={"help": "a RUNNING run of another host whose heartbeat is older than this is reconciled to KILLED"},
    )

    def __post_init__(self) -> None:
        if self.backend not in ("mlflow", "local"):
            raise ValueError(f"tracking.backend={self.backend!r}: expected mlflow or local")
        if not self.flush_interval_s > 0:
            raise ValueError(f"tracking.flush_interval_s={self.flush_interval_s}: expected a number > 0")
        if not self.system_metrics_interval_s > 0:
            raise ValueError(f"tracking.system_metrics_interval_s={self.system_metrics_interval_s}: expected a number > 0")
        if not self.heartbeat_s > 0:
            raise ValueError(f"tracking.heartbeat_s={self.heartbeat_s}: expected a number > 0")
        if not self.stale_after_s > self.heartbeat_s:
            raise ValueError(
                f"tracking.stale_after_s={self.stale_after_s}: expected a number > tracking.heartbeat_s ({self.heartbeat_s})"
            )
