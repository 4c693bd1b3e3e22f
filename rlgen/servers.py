"""Servers rlgen starts for the user: the MLflow UI over the project's store, and a registered model over REST."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
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


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def mlflow_command(host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow server` bound to `host:port` with `workers` worker processes; the store goes through its
    environment (`server_env`), never its command line, where `ps` would show a password."""
    return [mlflow_bin(), "server", "--host", host, "--port", str(port), "--workers", str(workers)]


def server_env() -> dict[str, str]:
    """The environment that points `mlflow server` at the configured store (read by its --backend-store-uri and
    --default-artifact-root options)."""
    client()  # creates the embedded store's folder and tables
    # MLflow's background job runner (for its GenAI features) doubles the start-up; set the variable to true for it
    jobs = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return {
        "MLFLOW_BACKEND_STORE_URI": tracking_uri(),
        "MLFLOW_DEFAULT_ARTIFACT_ROOT": (mlruns_dir() / "artifacts").as_uri(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": jobs,
    }


def exposure_warning(host: str, port: int, what: str) -> str | None:
    """The warning to print when `host` is not a loopback address: the server has no authentication."""
    if host in LOOPBACK or host.startswith("127."):
        return None
    return (
        f"warning: {what} listens on {host}:{port}, reachable from other machines, and has no authentication: anyone "
        "who reaches that port can read and change what it serves. Bind 127.0.0.1 (the default), or put it behind "
        "a proxy that authenticates."
    )


def check_port_free(host: str, port: int, what: str) -> None:
    """ConfigError, naming what listens there and the fix, when `host:port` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to bind
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(
                f"{what} cannot listen on {host}:{port}: {err.strerror} (another process, perhaps another "
                f"`rlgen ui`, holds the port). Fix: stop it, or pass --port with a free port (e.g. --port {port + 1})"
            ) from None


def run_ui(host: str, port: int, workers: int = 1) -> int:
    """Run the MLflow UI until it exits or Ctrl-C / SIGTERM stops it; the exit status to report (128 + a signal)."""
    return run_until_stopped(mlflow_command(host, port, workers), server_env())


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
