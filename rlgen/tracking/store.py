"""Where runs go: the embedded SQLite store under mlruns/, or the store or server in $MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import threading
from urllib.parse import urlsplit, urlunsplit

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rlgen.settings import mlruns_dir


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the embedded SQLite store under mlruns/."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def is_embedded() -> bool:
    """Whether runs go to the project's own SQLite store rather than a server."""
    return "MLFLOW_TRACKING_URI" not in os.environ


def unreachable() -> str | None:
    """Why the tracking server does not answer right now (one short GET of /health), or None if it does.

    A local store (SQLite, a folder) always answers: its problems show up as errors of the call itself.
    """
    if not tracking_uri().startswith(("http://", "https://")):
        return None
    from rlgen.errors import PreflightError
    from rlgen.preflight import check_tracking

    try:
        check_tracking()
    except PreflightError as err:
        return str(err).split(" Fix:")[0]
    return None


def answers() -> bool:
    """Whether the tracking store answers right now."""
    return unreachable() is None


def client() -> MlflowClient:
    """A client on the configured store (the embedded store is created on first use)."""
    uri = tracking_uri()
    if is_embedded() and uri not in _stores_ready:
        _open_embedded_store(uri)
    if urlsplit(uri).password:  # MLflow prints "View run ... at: <the URI>" as a run ends: not with a password in it
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


_stores_ready: set[str] = set()  # embedded stores this process has opened (MLflow caches a store per URI)
_stores_lock = threading.Lock()


def _open_embedded_store(uri: str) -> None:
    """Open the SQLite store at `uri`, creating its tables, while holding a lock file beside it.

    MLflow creates a new store's tables (and migrates them) unguarded: two processes that open a new
    store at once break each other ("table _alembic_tmp_metrics already exists"). Two pipeline runs
    started together do, so every process opens the store under an exclusive lock, one at a time.
    """
    import fcntl  # POSIX (Linux, macOS): imported here so that importing this module works everywhere

    folder = mlruns_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with _stores_lock, (folder / ".store.lock").open("w") as lock:
        if uri in _stores_ready:  # another thread opened it meanwhile
            return
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)  # the tracking store: created or checked
        mlflow.search_registered_models(max_results=1)  # the registry store: likewise
        _stores_ready.add(uri)


def experiment_id(name: str) -> str:
    """The id of experiment `name`, created if missing (artifacts under mlruns/ when embedded)."""
    mlflow = client()
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (mlruns_dir() / "artifacts").as_uri() if is_embedded() else None
    try:
        return str(mlflow.create_experiment(name, artifact_location=location))
    except MlflowException:  # created meanwhile by a concurrent run
        created = mlflow.get_experiment_by_name(name)
        if created is None:
            raise
        return str(created.experiment_id)


def ui_url() -> str:
    """Where the runs can be seen: the tracking server, or what `rlgen ui` serves for the embedded store."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return "http://127.0.0.1:5000"
    parts = urlsplit(uri.rstrip("/"))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))  # never a password in a link


def run_link(run_id: str) -> str:
    """A link to a run in the MLflow UI."""
    run = client().get_run(run_id)
    return f"{ui_url()}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
