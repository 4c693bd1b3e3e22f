"""The server path, for real: `prefect server start` on 127.0.0.1 with SQLite, a process work pool and
worker, `prefect deploy` from prefect.yaml, `prefect deployment run`, and a schedule that fires by itself."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_DQN = {
    "total_steps": 400,
    "learning_starts": 100,
    "train_every": 100,
    "gradient_steps": 2,
    "eval_episodes": 2,
    "val_episodes": 2,
    "eval_every": 0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, env: dict[str, str], store: Path) -> None:
        self.url, self.env, self.store = url, env, store

    def prefect(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def api(self, method: str, path: str, **body: object) -> object:
        response = httpx.request(method, f"{self.url}{path}", json=body or None, timeout=30)
        response.raise_for_status()
        return response.json()

    def wait_for_runs(self, deployment_id: str, count: int, timeout: float) -> list[dict]:
        """Flow runs of a deployment once `count` of them are COMPLETED (fails on a FAILED/CRASHED one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api("POST", "/flow_runs/filter", flow_runs={"deployment_id": {"any_": [deployment_id]}})
            states = [r["state_type"] for r in runs]
            assert not {"FAILED", "CRASHED"} & set(states), f"a flow run failed: {runs}"
            if states.count("COMPLETED") >= count:
                return runs
            time.sleep(2)
        deployment = self.api("GET", f"/deployments/{deployment_id}")
        raise AssertionError(
            f"no {count} completed flow runs within {timeout:.0f} s: {states}; deployment: {deployment}"
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Prefect server (SQLite, 127.0.0.1), a process work pool and a worker, all started here."""
    home = tmp_path_factory.mktemp("server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # create scheduled runs promptly
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "RLGEN_HOME": str(home),  # the flows' MLflow store
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    logs = (home / "server.log").open("w")
    processes = [
        subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (home / "server.log").read_text()[-3000:]
            time.sleep(1)
        srv = Server(url, env, home / "mlruns")
        srv.prefect("work-pool", "create", "rlgen-process", "--type", "process")
        worker_log = (home / "worker.log").open("w")
        processes.append(
            subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "rlgen-process"],
                env=env,
                cwd=ROOT,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
        )
        yield srv
    finally:
        for process in reversed(processes):  # the worker takes half a minute to stop on SIGTERM: the test is over
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_deployment_run_completes_on_a_worker_and_records_its_mlflow_run(server: Server) -> None:
    server.prefect("deploy", "--name", "dqn")  # from prefect.yaml
    out = server.prefect("deployment", "run", "dqn/dqn", "--params", json.dumps({"config": TINY_DQN}))
    assert "Created flow run" in out
    deployment = server.api("GET", "/deployments/name/dqn/dqn")
    (run,) = server.wait_for_runs(deployment["id"], 1, timeout=300)

    client = MlflowClient(tracking_uri=f"sqlite:///{server.store / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`prefect.flow_run_id` = '{run['id']}'",
    )
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    assert client.get_model_version("dqn-CartPole-v1", "1").aliases == ["champion"]


def test_a_schedule_fires_on_its_own(server: Server) -> None:
    # an interval schedule (every 20 s) rather than cron's one-minute resolution keeps the test short
    server.prefect(
        "deploy",
        "flows/models.py:dqn_flow",
        "--name",
        "scheduled",
        "--pool",
        "rlgen-process",
        "--interval",
        "20",
        "--param",
        f"config={json.dumps(TINY_DQN)}",
    )
    deployment = server.api("GET", "/deployments/name/dqn/scheduled")
    runs = server.wait_for_runs(deployment["id"], 1, timeout=240)  # nobody triggers it: the scheduler does
    assert all(r["auto_scheduled"] for r in runs)
