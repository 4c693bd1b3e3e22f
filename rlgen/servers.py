"""Servers rlgen starts for the user: the MLflow UI over the project's store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from rlgen.errors import ConfigError
from rlgen.settings import mlruns_dir
from rlgen.tracking.store import client, tracking_uri


def mlflow_command(host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow server` over the configured store, bound to `host:port` with `workers` worker processes; ConfigError if
    mlflow is not installed."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    mlflow_bin = shutil.which("mlflow", path=search)
    if mlflow_bin is None:
        raise ConfigError(
            "the mlflow command is not installed in this environment; run `make test` or `pip install mlflow`"
        )
    client()  # creates the embedded store's folder and tables
    return [
        mlflow_bin,
        "server",
        "--backend-store-uri",
        tracking_uri(),
        "--default-artifact-root",
        (mlruns_dir() / "artifacts").as_uri(),
        "--workers",
        str(workers),
        "--host",
        host,
        "--port",
        str(port),
    ]


def run_ui(host: str, port: int, workers: int = 1) -> int:
    """Run the MLflow UI until it exits or Ctrl-C / SIGTERM stops it; the exit status to report (128 + a signal).

    The server runs in a process group of its own, and a signal stops the whole group: `mlflow server` starts
    workers of its own, which a signal to it alone would leave behind.
    """
    # MLflow's background job runner (for its GenAI features) doubles the start-up; set the variable to true for it
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    server = subprocess.Popen(mlflow_command(host, port, workers), env=env, start_new_session=True)
    stopped: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    try:
        code = server.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # whatever of the group is left
    return 128 + stopped[0] if stopped else code
