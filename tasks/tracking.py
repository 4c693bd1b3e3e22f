"""Every MLflow call rlgen makes lives here.

Runs are addressed by explicit run ids through `MlflowClient`, never through MLflow's fluent
"active run": that is per thread, and Prefect runs tasks in a thread pool.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from rlgen.settings import mlruns_dir

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the embedded SQLite store under mlruns/."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def is_embedded() -> bool:
    """Whether runs go to the project's own SQLite store rather than a server."""
    return "MLFLOW_TRACKING_URI" not in os.environ


def client() -> MlflowClient:
    """A client on the configured store (the embedded store is created on first use)."""
    uri = tracking_uri()
    if is_embedded() and uri not in _stores_ready:
        _open_embedded_store(uri)
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
        return experiment.experiment_id
    location = (mlruns_dir() / "artifacts").as_uri() if is_embedded() else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent run
        return mlflow.get_experiment_by_name(name).experiment_id


# --------------------------------------------------------------------------- runs


@contextmanager
def run(
    experiment: str, name: str, tags: dict[str, str] | None = None, parent_id: str | None = None, reopen: str | None = None
) -> Iterator[str]:
    """Open a run (a child of `parent_id` if given), or `reopen` an existing one; yield its id; always close it.

    The run ends FINISHED on success, FAILED on an error (an Exception), and KILLED on an
    interruption: any other BaseException (Ctrl-C, SystemExit, Prefect's TerminationSignal).
    """
    all_tags = dict(tags or {})
    if parent_id:
        all_tags[PARENT_TAG] = parent_id
    mlflow = client()
    if reopen is None:
        run_id = mlflow.create_run(experiment_id(experiment), run_name=name, tags=all_tags).info.run_id
    else:
        run_id = reopen
        mlflow.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        mlflow.set_tag(run_id, "rlgen.resumed", str(int(mlflow.get_run(run_id).data.tags.get("rlgen.resumed", "0")) + 1))
    status = RunStatus.FAILED
    try:
        yield run_id
        status = RunStatus.FINISHED
    except Exception:
        raise
    except BaseException:  # Ctrl-C, SystemExit, Prefect's TerminationSignal on SIGTERM: an interruption
        status = RunStatus.KILLED
        raise
    finally:
        mlflow.set_terminated(run_id, status=RunStatus.to_string(status))


def get_run(run_id: str) -> Any:
    """A run's info, params, metrics and tags; raises LookupError naming the id if there is no such run."""
    try:
        return client().get_run(run_id)
    except MlflowException as err:
        raise LookupError(f"there is no MLflow run {run_id!r} in {mask_secrets(tracking_uri())}") from err


def child_runs(run_id: str) -> list[Any]:
    """The runs whose parent is `run_id`, oldest first."""
    parent = client().get_run(run_id)
    found = client().search_runs([parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'", order_by=["attributes.start_time ASC"])
    return list(found)


def set_tags(run_id: str, tags: dict[str, Any]) -> None:
    """Tag a run."""
    client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_config(run_id: str, config: BaseModel) -> None:
    """The validated config: every field as a param, and the whole as config.json (secrets masked)."""
    dumped = mask_secrets(config.model_dump(mode="json"))
    params = [Param(k, _param_value(v)) for k, v in _flatten(dumped).items()]
    mlflow = client()
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        mlflow.log_batch(run_id, params=params[start : start + 100])
    log_dict(run_id, dumped, "config.json")


def log_params(run_id: str, params: dict[str, Any]) -> None:
    """Extra params, such as data provenance."""
    client().log_batch(run_id, params=[Param(k, _param_value(v)) for k, v in _flatten(mask_secrets(params)).items()])


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """One batch of metrics at one step."""
    now = int(time.time() * 1000)
    client().log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


# whole words of a key (sample_tokens is not a token; db_password and api_key are secrets)
SECRET_KEY = re.compile(r"(^|[_.-])(password|passwd|secret|token|credentials?|(api|access|private|secret)[_-]?key)($|[_.-])", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s@]+@", re.IGNORECASE)


def mask_secrets(data: Any, key: str = "") -> Any:
    """`data` with the value of every secret-looking key, and every password in a URL, replaced by ***."""
    if isinstance(data, dict):
        return {k: mask_secrets(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v, key) for v in data]
    if SECRET_KEY.search(key) and data not in (None, ""):
        return "***"
    if isinstance(data, str):
        return URL_PASSWORD.sub(r"\g<scheme>:***@", data)
    return data


def safe_artifact_path(path: str | None) -> str | None:
    """`path` if it stays inside the run's artifact folder; raises ValueError for absolute paths and '..'."""
    if path is None:
        return None
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path) or ".." in parts:
        raise ValueError(f"artifact path {path!r} would leave the run's artifact folder; use a relative path without '..'")
    return path


def log_dict(run_id: str, data: dict, artifact_file: str) -> None:
    """A JSON artifact."""
    client().log_dict(run_id, data, safe_artifact_path(artifact_file))


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    """A text artifact (Markdown, HTML, plain text)."""
    client().log_text(run_id, text, safe_artifact_path(artifact_file))


def log_artifact(run_id: str, path: Path, artifact_path: str | None = None) -> str:
    """Upload a local file; returns its artifact URI."""
    client().log_artifact(run_id, str(path), safe_artifact_path(artifact_path))
    return artifact_uri(run_id, f"{artifact_path}/{path.name}" if artifact_path else path.name)


def artifact_uri(run_id: str, artifact_path: str) -> str:
    """The URI of an artifact of a run."""
    return f"{_artifact_root(tracking_uri(), run_id)}/{artifact_path}"


@functools.cache
def _artifact_root(store: str, run_id: str) -> str:
    """A run's artifact folder, which never changes: looked up once (`get_run` reads all of a run's metrics)."""
    return client().get_run(run_id).info.artifact_uri.rstrip("/")


def download(run_id: str, artifact_path: str, dst: Path) -> Path:
    """Download an artifact (file or folder) of a run into `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client().download_artifacts(run_id, safe_artifact_path(artifact_path), str(dst)))


def list_artifacts(run_id: str, folder: str | None = None) -> list[str]:
    """Paths of the artifacts directly under `folder` of a run."""
    return [f.path for f in client().list_artifacts(run_id, folder)]


def ui_url() -> str:
    """Where the runs can be seen: the tracking server, or what `rlgen ui` serves for the embedded store."""
    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def run_link(run_id: str) -> str:
    """A link to a run in the MLflow UI."""
    run = client().get_run(run_id)
    return f"{ui_url()}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


class MetricLogger:
    """An `on_metrics(step, metrics)` callback that never makes training wait for MLflow.

    Calls only queue rows; a background thread sends them in batches every `flush_every` seconds.
    `flush()` sends what is queued and returns when it is stored (checkpoints call it first, so that
    every metric up to a checkpoint's step is in the store); `close()` flushes and stops the thread.
    A resumed run passes `resume=True`: steps at or below each key's last stored step are dropped,
    so replaying the steps after the checkpoint adds no duplicates and leaves no gap.
    """

    def __init__(self, run_id: str, flush_every: float = 2.0, resume: bool = False) -> None:
        self.run_id = run_id
        self.flush_every = flush_every
        self.skip_through = last_metric_steps(run_id) if resume else {}
        self._pending: list[Metric] = []
        self._queue_lock, self._send_lock = threading.Lock(), threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._client = client()
        self._thread = threading.Thread(target=self._send_periodically, name=f"mlflow-metrics-{run_id[:8]}", daemon=True)
        self._thread.start()

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        if self._error is not None:
            raise RuntimeError(f"sending metrics to MLflow failed: {self._error}") from self._error
        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step) for k, v in metrics.items() if step > self.skip_through.get(k, -1)]
        with self._queue_lock:
            self._pending.extend(rows)

    def flush(self) -> None:
        """Send what is queued (MLflow takes at most 1000 metrics per batch) and wait until it is stored."""
        with self._send_lock:
            with self._queue_lock:
                pending, self._pending = self._pending, []
            for start in range(0, len(pending), 1000):
                self._client.log_batch(self.run_id, metrics=pending[start : start + 1000])

    def close(self) -> None:
        """Stop the background thread and send the rest."""
        self._stop.set()
        self._thread.join()
        self.flush()

    def _send_periodically(self) -> None:
        while not self._stop.wait(self.flush_every):
            try:
                self.flush()
            except Exception as err:  # reported to the training thread at its next call
                self._error = err
                return


def last_metric_steps(run_id: str) -> dict[str, int]:
    """The highest step stored for each metric of a run."""
    mlflow = client()
    return {key: max(m.step for m in mlflow.get_metric_history(run_id, key)) for key in mlflow.get_run(run_id).data.metrics}


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a metric, in step order."""
    return sorted((m.step, m.value) for m in client().get_metric_history(run_id, key))


# --------------------------------------------------------------------------- registry


class ModelVersion(NamedTuple):
    name: str
    version: str
    run_id: str
    source: str


def register_model(run_id: str, artifact_path: str, name: str, tags: dict[str, str] | None = None) -> ModelVersion:
    """Register an artifact folder of a run as a new version of model `name`."""
    mlflow = client()
    try:
        mlflow.create_registered_model(name, description="Trained and exported by rlgen.")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = artifact_uri(run_id, artifact_path)
    version = mlflow.create_model_version(name, source=source, run_id=run_id, tags=tags or {})
    return ModelVersion(name, str(version.version), run_id, source)


def wait_for_earlier_versions(name: str, version: str, tag: str, marker: str = "family", window: float = 300.0) -> None:
    """Wait until each earlier version of `name` that rlgen registered (tag `marker`) has `tag`.

    Processes that share a store (two pipeline runs at once, on one embedded store or one server) then
    act on one model's versions in version order. Only versions registered up to `window` seconds
    before `version` count, and a version whose process died before tagging it holds the others up
    for at most `window` seconds.
    """
    mlflow = client()
    created = mlflow.get_model_version(name, version).creation_timestamp
    deadline = time.monotonic() + window
    while True:
        waiting = [
            v.version
            for v in mlflow.search_model_versions(f"name='{name}'")
            if int(v.version) < int(version) and marker in v.tags and tag not in v.tags and created - v.creation_timestamp < window * 1000
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            log.warning("%s/%s: going on without version(s) %s, still without tag %s after %.0f s", name, version, ", ".join(waiting), tag, window)
            return
        time.sleep(1.0)


def alias_version(name: str, alias: str) -> Any | None:
    """The version of `name` that holds `alias`, or None (also when the model does not exist)."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    """Point `alias` of registered model `name` at `version` (moving it from any other version)."""
    client().set_registered_model_alias(name, alias, version)


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    """Set tags on one model version."""
    mlflow = client()
    for key, value in tags.items():
        mlflow.set_model_version_tag(name, version, key, str(value))


def model_versions(name: str) -> list:
    """Every version of registered model `name` (none if it does not exist)."""
    return list(client().search_model_versions(f"name='{name}'"))


def resolve_model(reference: str) -> tuple[str, str | None]:
    """(run_id, artifact_path) of a model given as NAME, NAME@ALIAS, NAME/VERSION or a run id.

    A bare NAME means its `champion` alias if set, else its latest version. For a run id the
    artifact path is None: the caller knows which folder its family exports to.
    """
    mlflow = client()
    name, _, alias = reference.partition("@")
    name, _, number = name.partition("/")
    try:
        if alias:
            version = mlflow.get_model_version_by_alias(name, alias)
        elif number:
            version = mlflow.get_model_version(name, number)
        else:
            model = mlflow.get_registered_model(name)
            if "champion" in (model.aliases or {}):
                version = mlflow.get_model_version(name, model.aliases["champion"])
            else:
                versions = mlflow.search_model_versions(f"name='{name}'")
                version = max(versions, key=lambda v: int(v.version))
        run_root = mlflow.get_run(version.run_id).info.artifact_uri.rstrip("/") + "/"
        return version.run_id, version.source.removeprefix(run_root)
    except (MlflowException, ValueError):
        pass
    try:
        mlflow.get_run(reference)
    except MlflowException:
        registered = {m.name: m for m in mlflow.search_registered_models()}
        known = ", ".join(sorted(registered)) or "none yet"
        if name in registered and (alias or number):  # the model exists; its alias or version does not
            aliases = ", ".join(f"{a} (version {v})" for a, v in sorted((registered[name].aliases or {}).items())) or "none"
            numbers = ", ".join(sorted((str(v.version) for v in mlflow.search_model_versions(f"name='{name}'")), key=int))
            known = f"{known}; {name} has aliases: {aliases}; versions: {numbers}"
        raise LookupError(
            f"No registered model or run called {reference!r} in {mask_secrets(tracking_uri())}; "
            f"registered models: {known}. Pass NAME, NAME@ALIAS, NAME/VERSION or a run id."
        ) from None
    return reference, None


def recent_runs(limit: int = 20) -> list[dict[str, Any]]:
    """The newest top-level runs of every experiment, with their status and final metrics."""
    mlflow = client()
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    if not experiments:
        return []
    runs = mlflow.search_runs(
        experiments, filter_string="", max_results=limit, order_by=["attributes.start_time DESC"]
    )
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "parent": r.data.tags.get(PARENT_TAG),
            "metrics": dict(r.data.metrics),
        }
        for r in runs
    ]


# --------------------------------------------------------------------------- helpers


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]


def temp_dir() -> tempfile.TemporaryDirectory:
    """A scratch folder for files on their way into the store."""
    return tempfile.TemporaryDirectory(prefix="rlgen-")
