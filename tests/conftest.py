"""Shared fixtures: a temporary MLflow store per test, one Prefect test server and one PostgreSQL per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders pixel observations headless
os.environ.setdefault("COLUMNS", "200")  # rich tables printed in this process (the `rlgen` fixture) are not cut
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: one torch thread per process (the subprocesses inherit it), or the
    # thread pools oversubscribe the cores and spin against each other. Tiny test models run no slower.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
import pg

import rlgen.settings


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the session's stores: data prepared (and LeNet evaluators trained) once, not per test."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def store(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty rlgen home in tmp_path: the embedded MLflow store goes to tmp_path/mlruns. Prepared data come from
    the session's data folder, as on a machine that ran rlgen before."""
    monkeypatch.setenv("RLGEN_HOME", str(tmp_path))
    monkeypatch.setenv("RLGEN_DATA_DIR", str(shared_data))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "mlruns"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A throwaway Prefect API (temporary database) shared by every flow test; yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.Postgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), removed at the end; fails if the binaries are
    missing."""
    try:
        cluster = pg.start()
    except FileNotFoundError as err:
        pytest.fail(str(err), pytrace=False)  # the CI image has PostgreSQL 15: missing is an error, not a skip
    try:
        yield cluster
    finally:
        pg.stop(cluster)


@pytest.fixture
def rlgen_cli(prefect_server: str, store: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the real `rlgen` console script in a subprocess against the test server and store."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "RLGEN_HOME": str(store.parent), "COLUMNS": "200"}
    executable = Path(sys.executable).with_name("rlgen")

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([str(executable), *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == expect, (
            f"rlgen {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        return done

    return run


@pytest.fixture
def rlgen(
    prefect_server: str, store: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """Run an `rlgen` command in this process (the same app the console script runs) against the test server and
    store: flows and commands tested without paying a fresh interpreter each time. `rlgen_cli` is the subprocess.

    Output is captured at the file descriptors."""
    from rlgen.cli import make_app

    monkeypatch.setenv("COLUMNS", "200")
    app = make_app()

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        capfd.readouterr()  # what came before is not this command's
        code = app(list(args), standalone_mode=False) or 0
        out, err = capfd.readouterr()
        assert code == expect, f"rlgen {' '.join(args)} exited {code}:\n{out}\n{err}"
        return subprocess.CompletedProcess(["rlgen", *args], code, out, err)

    return run


@pytest.fixture(autouse=True)
def _log_to_current_streams() -> None:
    """Point the log handlers (Prefect's rich console handlers among them) at this test's stderr: they bind the stream
    of the test that configured logging, which pytest closes after it, and flows run in this process too."""
    point_logs_at_stderr()


def point_logs_at_stderr() -> None:
    """What `_log_to_current_streams` does, for module-scoped fixtures that run flows before it."""
    import logging

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for handler in (h for logger in loggers for h in logger.handlers):
        if console := getattr(handler, "console", None):
            console.file = sys.stderr
        elif type(handler) is logging.StreamHandler:
            handler.stream = sys.stderr  # not setStream: it flushes the closed one


def model_files(client: Any, name: str, version: str = "1") -> set[str]:
    """The files of a registered version's MLflow model (MLmodel, artifacts/model.pt, ...), relative to its folder."""
    from urllib.parse import unquote, urlparse

    model_id = client.get_model_version(name, version).source.removeprefix("models:/")
    root = Path(unquote(urlparse(client.get_logged_model(model_id).artifact_location).path))
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
