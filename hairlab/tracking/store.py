"""Where runs go: the tracking URI, the MLflow client, and the experiment.

The default store is a SQLite database in the directory ``hairlab`` was started from
(``sqlite:///<cwd>/mlflow.db``) with artifacts beside it in ``mlartifacts/``.
``$MLFLOW_TRACKING_URI`` or ``tracking.uri`` points hairlab at any other store, such as a
shared ``mlflow server``. Creating the experiment (and, for SQLite, the database and its
schema) is done once per sweep, before jobs launch, because MLflow races there when several
processes try at the same moment (``duplicate column name: step``). Independent commands
started at once are kept apart too: :func:`client` opens a SQLite store, which creates and
migrates it on first use, under a file lock beside the database (``mlflow.db.lock``).

A store that stays locked, or that cannot be written, ends the command with one line
(:class:`~hairlab.errors.HairlabError`) instead of a traceback: locks are retried for
``$HAIRLAB_STORE_WAIT_S`` seconds (default 120), then reported.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from collections.abc import Callable, Iterator
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

#: Seconds to keep retrying a locked store (file lock or SQLite lock) before giving up in one line.
ENV_WAIT = "HAIRLAB_STORE_WAIT_S"
DEFAULT_WAIT_S = 120.0
#: Suffix of the lock file beside a SQLite database, held while a process creates or migrates it.
LOCK_SUFFIX = ".lock"

#: Errors worth retrying here (MLflow's HTTP client already retries network errors itself).
_LOCKED = ("database is locked", "database table is locked")
_TRANSIENT = (*_LOCKED, "unable to open database", "temporarily unavailable")
_READ_ONLY = ("readonly database", "read-only file system", "read only file system")


def wait_s() -> float:
    """How long a locked store is retried: ``$HAIRLAB_STORE_WAIT_S``, else 120 seconds."""
    raw = os.environ.get(ENV_WAIT)
    if raw is None or raw.strip() == "":
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise HairlabError(f"${ENV_WAIT}={raw!r} is not a number of seconds >= 0; e.g. {ENV_WAIT}=60")
    return value


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


def client(uri: str, *, write: bool = True) -> Any:
    """An ``MlflowClient`` bound to ``uri`` (never the process-global fluent state).

    For SQLite, MLflow creates and migrates the database the moment the client is made; two
    processes doing that at once corrupt the schema, so it happens under :func:`store_lock`.
    ``write=False`` (readers such as ``compare``) also works on a read-only copy of a store.
    """
    from mlflow import MlflowClient

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    if write:
        check_writable(db)
    with store_lock(db, required=write):
        _wait_unlocked(db)
        return retrying(lambda: MlflowClient(tracking_uri=uri), what=f"open the tracking store {db}", store=str(db))


def _wait_unlocked(db: Path) -> None:
    """Wait at most :func:`wait_s` for another process's SQLite lock on an existing ``db``.

    MLflow's own engine retries would otherwise hold a locked start for half a minute or more
    before any error, whatever ``$HAIRLAB_STORE_WAIT_S`` says.
    """
    import sqlite3

    if not db.exists():
        return
    bound = wait_s()
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=bound)
    except sqlite3.Error:
        return  # unreadable: MLflow's own open says why
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if any(t in str(exc).lower() for t in _LOCKED):
            raise HairlabError(
                f"the tracking store {db} is locked by another process (still locked after {bound:g} s); wait for "
                f"that command to finish, or set {ENV_WAIT}=SECONDS to wait longer"
            ) from None
    finally:
        conn.close()


def writable(uri: str) -> bool:
    """Whether this user can write the store (a server: assumed; SQLite: the file and its directory)."""
    db = sqlite_path(uri)
    if db is None:
        return True
    return os.access(db.parent, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


def lock_path(db: Path) -> Path:
    """The lock file of SQLite database ``db`` (``mlflow.db.lock`` beside ``mlflow.db``)."""
    return db.with_name(db.name + LOCK_SUFFIX)


@contextlib.contextmanager
def store_lock(db: Path, *, required: bool = True) -> Iterator[None]:
    """Hold ``db``'s lock file: one process at a time creates or migrates the database.

    Waits at most :func:`wait_s` seconds for another holder. Without ``required`` (a reader),
    a directory where the lock file cannot be made is read without the lock.
    """
    from filelock import FileLock, Timeout

    lock = lock_path(db)
    if not required and not os.access(lock.parent, os.W_OK) and not os.access(lock, os.W_OK):
        yield
        return
    bound = wait_s()
    file_lock = FileLock(str(lock), timeout=bound)
    try:
        file_lock.acquire()
    except Timeout:
        raise HairlabError(
            f"the tracking store {db} is locked by another process (its lock file {lock} was held for "
            f"{bound:g} s); wait for that command to finish, or set {ENV_WAIT}=SECONDS to wait longer"
        ) from None
    except PermissionError as exc:
        if required:
            raise _read_only(db, exc) from None
        yield  # a reader may look without the lock
        return
    try:
        yield
    finally:
        file_lock.release()


def check_writable(db: Path) -> None:
    """Refuse, in one line, a SQLite store or directory that this user cannot write."""
    parent = db.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _read_only(db, exc) from None
    if db.exists() and not os.access(db, os.W_OK):
        raise HairlabError(
            f"the tracking store {db} is read-only (no write permission for this user); make it writable "
            "(chmod u+w), or point tracking.uri / $MLFLOW_TRACKING_URI at a writable store"
        )
    if not os.access(parent, os.W_OK):
        raise _read_only(db, None)


def read_only_message(exc: BaseException) -> str | None:
    """One line for a write refused by permissions or a read-only file system, naming where; else None.

    For errors raised before hairlab's own checks (Hydra creating its output directory).
    """
    import errno

    if not isinstance(exc, OSError) or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    where = Path(exc.filename).resolve() if exc.filename else Path.cwd()
    parent = where.parent if not where.exists() else where
    return (
        f"cannot write {where}: {parent} is read-only for this user ({exc.strerror}); run hairlab from a writable "
        "directory, or send its outputs elsewhere with hydra.run.dir=DIR (hydra.sweep.dir=DIR for -m)"
    )


def _read_only(db: Path, exc: BaseException | None) -> HairlabError:
    what = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
    return HairlabError(
        f"the directory {db.parent} of the tracking store is read-only{what}: SQLite writes {db.name} and its "
        "journal there; run from a writable directory, or set tracking.uri=sqlite:////writable/dir/mlflow.db "
        "(or $MLFLOW_TRACKING_URI)"
    )


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


def retrying(fn: Callable[[], T], *, attempts: int | None = None, what: str = "MLflow call",
             store: str | None = None) -> T:
    """Call ``fn``, retrying with jittered backoff on SQLite locks and flaky connections.

    Retries for at most :func:`wait_s` seconds (and ``attempts`` tries when given). A store
    still locked, or found read-only, then ends in one line naming ``store`` (or "the tracking
    store") rather than in SQLAlchemy's traceback.
    """
    deadline = time.monotonic() + wait_s()
    delay = 0.1
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            text = str(exc).lower()
            where = store or "the tracking store"
            if any(t in text for t in _READ_ONLY):
                raise HairlabError(
                    f"{where} is read-only ({_first_line(exc)}) while trying to {what}; make it writable, or point "
                    "tracking.uri / $MLFLOW_TRACKING_URI at a writable store"
                ) from exc
            if not any(t in text for t in _TRANSIENT):
                raise
            locked = any(t in text for t in _LOCKED)
            cap = attempts if attempts is not None else (None if locked else 8)  # flaky opens: a few tries
            if time.monotonic() >= deadline or (cap is not None and attempt >= cap):
                if locked:
                    raise HairlabError(
                        f"{where} is locked by another process (still locked after {wait_s():g} s, trying to {what}); "
                        f"wait for that command to finish, or set {ENV_WAIT}=SECONDS to wait longer"
                    ) from exc
                raise
            time.sleep(min(delay * (1 + random.random()), max(0.0, deadline - time.monotonic()) + 0.05))
            delay = min(delay * 2, 3.0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


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
