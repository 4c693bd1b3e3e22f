"""Servers rlgen starts for the user: the MLflow UI over the project's store, and a registered model over REST."""

from __future__ import annotations

import contextlib
import json
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


def mlflow_bin() -> str:
    """The `mlflow` command of this environment; ConfigError if it is not installed."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("mlflow", path=search)
    if found is None:
        raise ConfigError(
            "the mlflow command is not installed in this environment; run `make test` or `pip install mlflow`"
        )
    return found


def mlflow_command(host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow server` over the configured store, bound to `host:port` with `workers` worker processes."""
    client()  # creates the embedded store's folder and tables
    return [
        mlflow_bin(), "server", "--backend-store-uri", tracking_uri(),
        "--default-artifact-root", (mlruns_dir() / "artifacts").as_uri(),
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def run_ui(host: str, port: int, workers: int = 1) -> int:
    """Run the MLflow UI until it exits or Ctrl-C / SIGTERM stops it; the exit status to report (128 + a signal)."""
    # MLflow's background job runner (for its GenAI features) doubles the start-up; set the variable to true for it
    jobs = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return run_until_stopped(mlflow_command(host, port, workers), {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": jobs})


def model_server_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow models serve` of the MLflow model at `uri`, in this environment, bound to `host:port`."""
    return [mlflow_bin(), "models", "serve", "-m", uri, "--env-manager", "local", "--host", host, "--port", str(port),
            "--workers", str(workers)]  # fmt: skip


def run_model_server(uri: str, host: str, port: int, workers: int = 1) -> int:
    """Serve the model at `uri` until Ctrl-C / SIGTERM; the store goes to the server through the environment."""
    return run_until_stopped(model_server_command(uri, host, port, workers), {"MLFLOW_TRACKING_URI": tracking_uri()})


def curl_example(uri: str, port: int) -> str:
    """A ready-to-paste request of the served model at `uri`: its stored serving input example."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/serving_input_example.json")
    body = json.dumps(json.loads(Path(local).read_text()))
    return f"curl -s http://127.0.0.1:{port}/invocations -H 'Content-Type: application/json' -d '{body}'"


def run_until_stopped(command: list[str], env: dict[str, str]) -> int:
    """Run a server until it exits or Ctrl-C / SIGTERM stops it; the exit status to report (128 + a signal).

    The server runs in a process group of its own, and a signal stops the whole group: MLflow's servers start
    workers of their own, which a signal to the server alone would leave behind. `env` adds to (and wins over)
    this process's environment: secrets go to the child that way, never on its command line.
    """
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # MLflow runs `uvicorn`
    server = subprocess.Popen(command, env={**os.environ, "PATH": path, **env}, start_new_session=True)
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
