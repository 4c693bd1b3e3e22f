"""Checks of the environment before any work: the folders rlgen writes to can be written, the servers answer.

A problem raises PreflightError (a ConfigError, so the CLI exits 2) with one paragraph that names the
folder or URL, what is wrong and how to fix it. Nothing is created or left behind by a check. They are
cheap: a few stat calls and one probe folder per local directory, one short HTTP GET (or TCP connect)
per server, bounded by $RLGEN_PREFLIGHT_TIMEOUT seconds (default 5) including name resolution.
MLflow's own client would otherwise retry an unreachable server for minutes, and Prefect for ~30 s.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from rlgen import settings
from rlgen.errors import PreflightError, UserError

TIMEOUT_ENV = "RLGEN_PREFLIGHT_TIMEOUT"
DEFAULT_TIMEOUT_S = 5.0
DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


def check_run(config_cls: type[BaseModel]) -> None:
    """What `rlgen run` needs before it starts a flow of `config_cls`: the store (or MLflow server) and its folders.

    Prefect is checked by `check_prefect`, just before the flow starts (it needs prefect imported).
    """
    check_tracking()
    fields = config_cls.model_fields
    if {"data_dir", "corpus_path", "data_root"} & set(fields):  # flows that prepare (and cache) data
        check_writable_dir(
            settings.data_dir(), "the data folder", "set RLGEN_DATA_DIR (or RLGEN_HOME) to a writable folder"
        )
    if "checkpoint_every" in fields:  # flows that write resumable checkpoints
        check_writable_dir(
            settings.checkpoints_dir(),
            "the checkpoint folder",
            "set RLGEN_CHECKPOINT_DIR (or RLGEN_HOME) to a writable folder",
        )


def check_model_source(reference: str) -> None:
    """What `play`, `sample`, `generate` and `score` need: nothing for an explicit .pt file, else the tracking store."""
    if Path(reference).suffix == ".pt":
        return
    check_tracking()
    store = settings.mlruns_dir()
    if (
        not os.environ.get("MLFLOW_TRACKING_URI") and not (store / "mlflow.db").exists()
    ):  # do not create an empty store to look
        raise PreflightError(
            f"No registered model or run called {reference!r}: there is no MLflow store at {store} yet. Train a model "
            "first "
            "(`rlgen run NAME`), point RLGEN_HOME or MLFLOW_TRACKING_URI at the store that holds it, or pass an "
            "exported .pt file."
        )


def check_tracking() -> None:
    """The MLflow store can be written (local) or its server answers (remote)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        store = settings.mlruns_dir()
        fix = "point RLGEN_HOME at a writable folder, or set MLFLOW_TRACKING_URI to a tracking server"
        check_writable_dir(store, "the embedded MLflow store", fix)
        check_writable_file(store / "mlflow.db", "the embedded MLflow store's database", fix)
        return
    scheme = urlsplit(uri).scheme.lower()
    fix = "start the server, fix MLFLOW_TRACKING_URI, or unset it to use the embedded store under RLGEN_HOME"
    if scheme in ("http", "https"):
        check_http(uri, uri.rstrip("/") + "/health", "The MLflow tracking server", fix)
    elif scheme.split("+")[0] in DB_PORTS:
        check_tcp(uri, "The MLflow tracking database", fix)
    elif scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///").removeprefix("sqlite://"))  # sqlite:////abs or sqlite:///rel
        fix = "set MLFLOW_TRACKING_URI to a sqlite:/// path in a writable folder"
        check_writable_dir(path.parent, f"the folder of the MLflow store {uri}", fix)
        check_writable_file(path, f"the MLflow store {uri}", fix)
    elif scheme in ("", "file"):
        check_writable_dir(
            Path(urlsplit(uri).path if scheme else uri),
            f"the MLflow store {uri}",
            "set MLFLOW_TRACKING_URI to a writable folder",
        )


def check_prefect() -> None:
    """Prefect's API answers, if one is configured (PREFECT_API_URL or the active Prefect profile)."""
    from prefect.settings import (
        get_current_settings,  # what the flow will use; prefect is imported next anyway
    )

    url = get_current_settings().api.url
    if url:
        fix = (
            "start it (`prefect server start`), fix PREFECT_API_URL, or unset it to run with Prefect's embedded server"
        )
        check_http(url, url.rstrip("/") + "/health", "The Prefect API", fix)


# --------------------------------------------------------------------------- the checks


def timeout_s() -> float:
    """Seconds a server has to answer: $RLGEN_PREFLIGHT_TIMEOUT, default 5."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        raise PreflightError(
            f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds; unset it or set e.g. 5"
        ) from None
    return value if value > 0 else DEFAULT_TIMEOUT_S


def check_writable_dir(path: Path, what: str, fix: str) -> None:
    """Raise PreflightError unless `path` is a writable folder or can be created as one. Creates nothing."""
    existing = path
    try:
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        else:
            os.rmdir(
                tempfile.mkdtemp(prefix=".rlgen-probe-", dir=existing)
            )  # a real write: root ignores permission bits
            return
    except OSError as err:
        problem = f"{existing} cannot be written ({err.strerror or err})"
    action = "be created" if existing != path else "be written"
    raise PreflightError(
        f"{what[0].upper()}{what[1:]} at {path} cannot {action}: {problem}. Fix: {fix}. Nothing was started."
    )


def check_writable_file(path: Path, what: str, fix: str) -> None:
    """Raise PreflightError if `path` exists but cannot be opened for writing (it is not changed)."""
    if not path.exists():
        return
    try:
        with path.open("ab"):
            pass
    except OSError as err:
        raise PreflightError(
            f"{what[0].upper()}{what[1:]} at {path} cannot be written ({err.strerror or err}). Fix: {fix}. Nothing "
            "was started."
        ) from None


def check_http(url: str, probe: str, what: str, fix: str) -> None:
    """Raise PreflightError naming `url` unless GET `probe` is answered within the timeout (not by a 404 or 5xx)."""
    probe = _without_userinfo(probe)

    def get() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(probe, method="GET"), timeout=timeout_s()):
                pass
        except urllib.error.HTTPError as err:
            if err.code == 404:  # no such endpoint: something else listens there
                raise ConnectionError("HTTP 404: something else than the expected server listens there") from None
            if err.code >= 500:  # a proxy whose backend is down, or a failing server
                raise ConnectionError(f"HTTP {err.code} {err.reason}") from None
            # 401, 403, ...: it answered, behind authentication; the client reports the rest itself

    _within_timeout(get, url, f"GET {probe}", what, fix)


def check_tcp(url: str, what: str, fix: str) -> None:
    """Raise PreflightError naming `url` unless its host accepts a TCP connection within the timeout."""
    parts = urlsplit(url)
    port = parts.port or DB_PORTS[parts.scheme.lower().split("+")[0]]

    def connect() -> None:
        socket.create_connection((parts.hostname or "localhost", port), timeout=timeout_s()).close()

    _within_timeout(connect, url, f"a connection to {parts.hostname}:{port}", what, fix)


def _within_timeout(action: Callable[[], None], url: str, attempt: str, what: str, fix: str) -> None:
    """Run `action` in a daemon thread so that even name resolution is bounded; raise PreflightError on failure."""
    errors: list[BaseException] = []
    limit = timeout_s()

    def target() -> None:
        try:
            action()
        except Exception as err:
            errors.append(err)

    thread = threading.Thread(target=target, name="rlgen-preflight", daemon=True)
    thread.start()
    thread.join(limit + 1.0)
    if thread.is_alive():
        reason = "no answer"
    elif errors:
        reason = _reason(errors[0])
    else:
        return
    raise PreflightError(
        f"{what} at {_masked(url)} does not answer ({reason}; tried {attempt} within {limit:g} s). "
        f"Fix: {fix}. Nothing was started."
    )


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err.reason, str):
        err = err.reason
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    if isinstance(err, ConnectionError) and err.args:
        return str(err.args[0])
    return f"{err.__class__.__name__}: {err}"


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _masked(url: str) -> str:
    """`url` with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


# --------------------------------------------------------------------------- user errors inside a flow


class _NoTracebackForUserErrors:
    """A logging filter: records of a user error (bad config or data) keep their message and lose the traceback."""

    def __init__(self, expected: tuple[type[BaseException], ...]) -> None:
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_user_errors() -> None:
    """Prefect logs a ConfigError or DataError raised in a flow with its traceback; the CLI says it in one paragraph
    instead."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTracebackForUserErrors) for f in logger.filters):
            logger.addFilter(_NoTracebackForUserErrors(UserError))
