"""The MLflow backend of :class:`hairlab.tracking.base.Tracker`.

Logging must never slow training, so calls only append to an in-memory buffer; a
background thread sends the buffer with ``log_batch`` every ``flush_interval_s`` seconds
(or sooner when it fills), retrying SQLite lock errors and flaky connections. One
``log_batch`` per interval also keeps parallel jobs from fighting over a SQLite lock on
every step. ``close`` drains the buffer, uploads the job's artifacts and ends the run.
The same thread refreshes the run's ``hairlab.heartbeat`` tag every ``heartbeat_s``, which
tells :mod:`hairlab.tracking.reconcile` the run is alive, and sends the data's MLflow dataset
inputs (:meth:`MLflowTracker.log_dataset`). MLflow's own system-metrics monitor, when the
factory starts one, samples on its own thread; ``close`` stops it on every path.

The tracker talks to MLflow only through an ``MlflowClient`` bound to one run id, never the
fluent API, so an inherited ``MLFLOW_RUN_ID`` (mlflow#15713) or another thread's active run
cannot redirect what it logs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hairlab.tracking.params import MAX_VALUE_LENGTH, clean_key
from hairlab.tracking.store import retrying

log = logging.getLogger(__name__)

MAX_METRICS_PER_BATCH = 1000
MAX_TAGS_PER_BATCH = 100
MAX_TAG_LENGTH = 8000
#: The engine's final checkpoint in ``<job dir>/checkpoints/`` (uploaded with ``log_checkpoint``).
CHECKPOINT = "last.pt"
#: Hydra's per-job files uploaded at close, when present.
HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")


class MLflowTracker:
    """Logs one job to one MLflow run through a background batch writer."""

    def __init__(
        self,
        mlflow_client: Any,
        run_id: str,
        *,
        flush_interval_s: float = 2.0,
        heartbeat_s: float = 30.0,
        job_dir: str | Path | None = None,
        upload_artifacts: bool = True,
        plots: bool = True,
        log_checkpoint: bool = False,
        uri: str | None = None,
        system_metrics: Any = None,
    ) -> None:
        self.client = mlflow_client
        self.run_id = run_id
        self.flush_interval_s = float(flush_interval_s)
        self.heartbeat_s = float(heartbeat_s)
        self.job_dir = Path(job_dir) if job_dir is not None else None
        self.upload_artifacts = upload_artifacts
        self.plots = plots
        self.log_checkpoint = log_checkpoint
        #: The store's URI (``log_model`` goes through MLflow's fluent API, which needs it).
        self.uri = uri
        #: A started ``mlflow.system_metrics`` monitor of this run, stopped by ``close``.
        self.system_metrics = system_metrics
        #: Every metric logged, ``key -> [(step, value)]``, for the job's curve plots.
        self.history: dict[str, list[tuple[int, float]]] = {}
        #: Errors the writer gave up on (also tagged on the run at close).
        self.errors: list[str] = []
        self.status: str | None = None
        self._params_sent: dict[str, str] = {}
        self._metrics: list[Any] = []
        self._params: dict[str, str] = {}
        self._tags: dict[str, str] = {}
        self._inputs: list[Any] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"hairlab-mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()

    # -- Tracker protocol ----------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        from hairlab.tracking.params import format_value

        with self._lock:
            for key, value in params.items():
                text = format_value(value)[:MAX_VALUE_LENGTH]
                key = clean_key(str(key))
                sent = self._params_sent.get(key)
                if sent is not None and sent != text:
                    log.warning("param %s already logged as %r; ignoring new value %r", key, sent, text)
                    continue
                if sent is None:
                    self._params[key] = text
                    self._params_sent[key] = text
        self._wake.set()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # On the training thread: plain tuples only; the writer builds MLflow's entities.
        now = int(time.time() * 1000)
        step = int(step)
        with self._lock:
            for key, value in metrics.items():
                v = float(value)
                self._metrics.append((key, v, now, step))
                history = self.history.get(key)
                if history is None:
                    history = self.history[key] = []
                history.append((step, v))
            full = len(self._metrics) >= MAX_METRICS_PER_BATCH
        if full:
            self._wake.set()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        with self._lock:
            for key, value in tags.items():
                self._tags[clean_key(str(key))] = str(value)[:MAX_TAG_LENGTH]
        self._wake.set()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file (or a directory's contents) now; a failure warns, never raises."""
        path = Path(path)
        try:
            if path.is_dir():
                retrying(lambda: self.client.log_artifacts(self.run_id, str(path), artifact_path))
            else:
                retrying(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))
        except Exception as exc:  # noqa: BLE001 - tracking must not kill a finished training
            self._error(f"artifact {path}: {type(exc).__name__}: {exc}")

    def log_dataset(self, data: Any) -> None:
        """The data's facts as ``data.*`` tags, its load timings as ``data/*`` metrics (step 0),
        and each split as an MLflow dataset input (sent by the writer, like everything else)."""
        from hairlab.tracking.inputs import data_facts, dataset_inputs

        info = data.info()
        tags, metrics = data_facts(info)
        self.set_tags(tags)
        if metrics:
            self.log_metrics(metrics, step=0)
        try:
            inputs = dataset_inputs(data, info)
        except Exception as exc:  # noqa: BLE001 - a dataset the inputs cannot describe still trains
            self._error(f"dataset inputs: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._inputs.extend(inputs)
        self._wake.set()

    def log_model(self, model: Any, input_example: Any) -> None:
        """Log ``model`` with ``mlflow.pytorch`` (signature from ``input_example``); warns, never raises.

        The model is saved from a CPU copy in eval mode, so it loads on any machine with
        ``mlflow.pytorch.load_model(<the run's hairlab.model_uri tag>)``.
        """
        try:
            info = _log_pytorch_model(model, input_example, self.run_id, self.uri)
        except Exception as exc:  # noqa: BLE001 - the trained run must not be lost to a model upload
            self._error(f"log_model: {type(exc).__name__}: {str(exc)[:300]}")
            return
        self.set_tags({"hairlab.model_uri": info.model_uri})

    def close(self, status: str = "FINISHED") -> None:
        """Drain the buffer, upload the job's files and plots, then end the run.

        An interrupted run (KILLED) is ended right after its metrics are flushed, before the
        uploads: whatever cuts the process next (a SIGKILL from a launcher tearing down its
        workers) can no longer leave it RUNNING. The system-metrics monitor stops first (its
        last samples flushed), except on KILLED, where it stops after the run is ended.
        """
        if self.status is not None:
            return
        self.status = status
        if status != "KILLED":
            self._stop_system_metrics()
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
        self.flush()
        if status == "KILLED":
            self._terminate(status)
            self._stop_system_metrics()
        if self.upload_artifacts and self.job_dir is not None:
            self._upload_job_files()
        if self.plots and self.history and self.job_dir is not None:
            self._upload_plots()
        if self.errors:
            self.set_tags({"hairlab.tracking_errors": f"{len(self.errors)}: {self.errors[-1]}"})
            self.flush()
        if status != "KILLED":
            self._terminate(status)

    def _stop_system_metrics(self) -> None:
        monitor, self.system_metrics = self.system_metrics, None
        if monitor is None:
            return
        try:
            monitor.finish()  # wakes its thread at once, joins it, sends the samples it holds
        except Exception as exc:  # noqa: BLE001 - system metrics are extras; the run's end is not
            log.warning("MLflow run %s: stopping system metrics failed: %s", self.run_id, exc)

    def _terminate(self, status: str) -> None:
        try:
            retrying(lambda: self.client.set_terminated(self.run_id, status=status))
        except Exception as exc:  # noqa: BLE001 - reported, the job result is already logged
            log.error("could not mark MLflow run %s %s: %s", self.run_id, status, exc)

    # -- extras the runner uses ----------------------------------------------------------
    def record_error(self, exc: BaseException) -> None:
        """Tag the run with the error and keep its traceback as ``error.txt``."""
        summary = f"{type(exc).__name__}: {exc}".strip()
        self.set_tags({"hairlab.error": summary, "mlflow.note.content": f"**{summary}**"})
        if self.job_dir is not None:
            path = self.job_dir / "error.txt"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            except OSError as err:
                self._error(f"error.txt: {err}")

    def flush(self) -> None:
        """Send everything buffered now (the writer thread does this on its own too)."""
        from mlflow.entities import Metric, Param, RunTag

        with self._send_lock:
            with self._lock:
                pending, self._metrics = self._metrics, []
                params, self._params = self._params, {}
                tags, self._tags = self._tags, {}
                inputs, self._inputs = self._inputs, []
            if inputs:
                try:
                    retrying(lambda: self.client.log_inputs(self.run_id, datasets=inputs), what="log_inputs")
                except Exception as exc:  # noqa: BLE001 - kept and reported; training goes on
                    self._error(f"log_inputs failed: {type(exc).__name__}: {str(exc)[:300]}")
            if params:
                items = [Param(k, v) for k, v in params.items()]
                for i in range(0, len(items), MAX_TAGS_PER_BATCH):
                    self._send(params=items[i : i + MAX_TAGS_PER_BATCH])
            if tags:
                run_tags = [RunTag(k, v) for k, v in tags.items()]
                for i in range(0, len(run_tags), MAX_TAGS_PER_BATCH):
                    self._send(tags=run_tags[i : i + MAX_TAGS_PER_BATCH])
            keys: dict[str, str] = {}
            metrics = [Metric(keys.setdefault(k, clean_key(k)), v, ts, step) for k, v, ts, step in pending]
            for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                self._send(metrics=metrics[i : i + MAX_METRICS_PER_BATCH])

    # -- internals ----------------------------------------------------------------------
    def _loop(self) -> None:
        from hairlab.tracking.liveness import HEARTBEAT, heartbeat_value

        next_beat = time.monotonic() + self.heartbeat_s
        while not self._stop.is_set():
            self._wake.wait(max(0.0, min(self.flush_interval_s, next_beat - time.monotonic())))
            self._wake.clear()
            if self._stop.is_set():
                break
            if time.monotonic() >= next_beat:  # the run is alive: see hairlab.tracking.reconcile
                with self._lock:
                    self._tags[HEARTBEAT] = heartbeat_value()
                next_beat = time.monotonic() + self.heartbeat_s
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the thread must survive to flush at close
                self._error(f"flush: {type(exc).__name__}: {exc}")

    def _send(self, **batch: Any) -> None:
        try:
            retrying(lambda: self.client.log_batch(self.run_id, **batch), what="log_batch")
        except Exception as exc:  # noqa: BLE001 - kept and reported; training goes on
            kinds = ", ".join(f"{len(v)} {k}" for k, v in batch.items())
            self._error(f"log_batch ({kinds}) failed: {type(exc).__name__}: {str(exc)[:300]}")

    def _error(self, text: str) -> None:
        self.errors.append(text)
        log.warning("MLflow run %s: %s", self.run_id, text)

    def _upload_job_files(self) -> None:
        assert self.job_dir is not None
        for rel in HYDRA_FILES:
            path = self.job_dir / rel
            if path.is_file():
                self.log_artifact(path, "hydra")
        for name in ("resolved_config.yaml", "error.txt"):
            path = self.job_dir / name
            if path.is_file():
                self.log_artifact(path)
        for path in sorted(self.job_dir.glob("*.log")):
            if path.is_file() and path.stat().st_size:
                self.log_artifact(path, "logs")
        if self.log_checkpoint:
            final = self.job_dir / "checkpoints" / CHECKPOINT
            if final.is_file():
                self.log_artifact(final, "checkpoints")

    def _upload_plots(self) -> None:
        assert self.job_dir is not None
        from hairlab.tracking.plots import job_curves

        try:
            paths = job_curves(self.history, self.job_dir / "plots")
        except Exception as exc:  # noqa: BLE001 - a plotting failure must not lose the run
            self._error(f"plots: {type(exc).__name__}: {exc}")
            return
        for path in paths:
            self.log_artifact(path, "plots")


def _log_pytorch_model(model: Any, input_example: Any, run_id: str, uri: str | None) -> Any:
    """``mlflow.pytorch.log_model`` into run ``run_id`` of store ``uri``; returns MLflow's ``ModelInfo``.

    The signature is inferred from the example and the model's output on it; the pip
    requirements are named (torch, hairlab) rather than inferred, which would load the model
    again in a subprocess. A failed log_model can leave a half-made logged model behind; the
    run's ``hairlab.model_uri`` tag names only a complete one.
    """
    import copy

    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from hairlab import __version__

    example = input_example.detach().to("cpu", torch.float32).contiguous()
    params = list(model.parameters())
    on_cpu = all(p.device.type == "cpu" for p in params) if params else True
    was_training = model.training
    cpu_model = model if on_cpu else copy.deepcopy(model).to("cpu")
    cpu_model.eval()
    try:
        with torch.no_grad():
            output = cpu_model(example)
        signature = infer_signature(example.numpy(), output.detach().numpy())
        options = dict(name="model", run_id=run_id, signature=signature, input_example=example.numpy(),
                       pip_requirements=[f"torch=={torch.__version__}", f"hairlab=={__version__}"])
        with _tracking_uri(uri):
            try:  # MLflow's default: a torch.export program, which loads without hairlab's classes
                return mlflow.pytorch.log_model(cpu_model, **options)
            except Exception as exc:  # noqa: BLE001 - a model torch.export cannot trace is pickled instead
                log.warning("torch.export could not save the model (%s: %s); logging it pickled",
                            type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
                return mlflow.pytorch.log_model(cpu_model, serialization_format="pickle", **options)
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _tracking_uri(uri: str | None) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for a fluent call, then put back as it was.

    MLflow's own ``_use_tracking_uri`` also rewrites ``$MLFLOW_TRACKING_URI``; the variable is
    restored too, so nothing outside this call sees a change.
    """
    if not uri:
        yield
        return
    from mlflow.tracking._tracking_service import utils

    env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with utils._use_tracking_uri(uri):
            yield
    finally:
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
