"""Where runs go: the tracking URI, the MLflow client, and the experiment.

The default store is a SQLite database in the directory ``hairlab`` was started from
(``sqlite:///<cwd>/mlflow.db``) with artifacts beside it in ``mlartifacts/``.
``$MLFLOW_TRACKING_URI`` or ``tracking.uri`` points hairlab at any other store, such as a
shared ``mlflow server``. Creating the experiment (and, for SQLite, the database and its
schema) is done once per sweep, before jobs launch, because MLflow races there when several
processes try at the same moment; the helpers here still retry, for independent processes.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hairlab.errors import HairlabError

T = TypeVar("T")

ENV_URI = "MLFLOW_TRACKING_URI"
DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
#: Tells the MLflow 3 UI to open the experiment on its training-runs view (not GenAI traces).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
#: Experiment used when neither ``tracking.experiment`` nor ``+experiment=NAME`` names one.
DEFAULT_EXPERIMENT = "hairlab"

#: Errors worth retrying here (MLflow's HTTP client already retries network errors itself).
_TRANSIENT = ("database is locked", "database table is locked", "unable to open database",
              "temporarily unavailable")


def resolve_uri(uri: str | None = None, base_dir: str | Path | None = None) -> str:
    """The tracking URI: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``.

    A relative SQLite path is made absolute against ``base_dir`` (the directory hairlab was
    started from), so jobs that change directory still share one database.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    chosen = uri or os.environ.get(ENV_URI) or f"sqlite:///{DEFAULT_DB}"
    chosen = str(chosen)
    if chosen.startswith("sqlite:///") and not chosen.startswith("sqlite:////"):
        path = chosen[len("sqlite:///") :]
        if path and path != ":memory:":
            chosen = f"sqlite:///{(base / path).resolve()}"
    elif "://" not in chosen and not chosen.startswith("sqlite:"):
        raise HairlabError(
            f"tracking URI '{chosen}' is not a URI; use sqlite:///path/to/mlflow.db or "
            "http://host:port (the local ./mlruns file store is refused by MLflow 3.13+)"
        )
    return chosen


def sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def is_local(uri: str) -> bool:
    return uri.startswith("sqlite:")


def client(uri: str) -> Any:
    """An ``MlflowClient`` bound to ``uri`` (never the process-global fluent state)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def check_server(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when an HTTP tracking server does not answer.

    MLflow's own client retries a refused connection for minutes before giving up.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            resp.read(64)
    except urllib.error.HTTPError:
        return  # it answered; auth or proxies are MLflow's business
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HairlabError(
            f"MLflow server {uri} is not reachable ({reason}); start it (`mlflow server ...`), "
            "fix tracking.uri / $MLFLOW_TRACKING_URI, or use tracking=local"
        ) from None


def retrying(fn: Callable[[], T], *, attempts: int = 8, what: str = "MLflow call") -> T:
    """Call ``fn``, retrying with jittered backoff on SQLite locks and flaky connections."""
    delay = 0.1
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or not any(t in text for t in _TRANSIENT):
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 3.0)
    raise AssertionError(f"unreachable: {what}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "experiment"


def ensure_experiment(mlflow_client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created if missing; safe against concurrent creators."""
    from mlflow.exceptions import MlflowException

    def get() -> Any:
        return mlflow_client.get_experiment_by_name(name)

    exp = retrying(get, what="get experiment")
    if exp is None:
        location = None
        db = sqlite_path(uri)
        if db is not None:
            location = (db.parent / ARTIFACT_DIR / _slug(name)).resolve().as_uri()
        try:
            created = mlflow_client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
            return str(created)
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "unique constraint" not in str(exc).lower():
                raise
            exp = retrying(get, what="get experiment")
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        raise HairlabError(
            f"MLflow experiment '{name}' is deleted; restore it (`mlflow experiments restore "
            f"--experiment-id {exp.experiment_id}`) or choose another name with tracking.experiment=NAME"
        )
    return str(exp.experiment_id)


def experiment_name(cfg: Any, choices: dict[str, Any] | None = None) -> str:
    """``tracking.experiment``, else the ``+experiment=NAME`` choice, else ``hairlab``."""
    tracking = cfg.get("tracking") or {}
    explicit = tracking.get("experiment") if hasattr(tracking, "get") else None
    if explicit:
        return str(explicit)
    chosen = (choices or {}).get("experiment")
    return str(chosen) if chosen else DEFAULT_EXPERIMENT
