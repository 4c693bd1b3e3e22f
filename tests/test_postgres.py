"""docker/compose.yaml's PostgreSQL setup, for real without Docker, and two pipeline runs at once.

The `postgres` fixture (tests/pg.py) runs a throwaway PostgreSQL 15 on 127.0.0.1. Here `mlflow server`
(PostgreSQL backend, artifacts served by MLflow) and `prefect server start` (PostgreSQL via asyncpg) run on
it, as in compose, and two `rlgen run pipeline` processes (the real console script) run through them at
once; then two run at once on one embedded SQLite store. Every run, metric history, artifact, registered
version and alias must come out whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pg
import pytest
from mlflow.tracking import MlflowClient
from servers import free_port, wait_healthy
from test_flow_pipeline import SHARED, TINY

BIN = Path(sys.executable).parent
SEEDS = (1, 2)
REGISTERED = {"dqn": "dqn-CartPole-v1", "vae": "vae-mnist"}  # the smallest RL and image branches, and their model names
OVERRIDES = {"dqn": {**TINY["dqn"], "log_every": 100}, "vae": TINY["vae"]}

pytestmark = pytest.mark.skipif(not (SHARED / "mnist" / "raw").is_dir(), reason=f"the offline data are not at {SHARED}")


class Servers(NamedTuple):
    mlflow: str  # MLFLOW_TRACKING_URI
    prefect: str  # PREFECT_API_URL


@pytest.fixture
def servers(postgres: pg.Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The MLflow and Prefect servers of docker/compose.yaml, each on its own PostgreSQL database, on 127.0.0.1."""
    home = tmp_path_factory.mktemp("pg-servers")
    postgres.create_database("prefect")  # as docker/postgres-init.sql does
    postgres.create_database("mlflow")
    mlflow_port, prefect_port = free_port(), free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres.url("prefect", "postgresql+asyncpg"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    commands = {
        "mlflow": [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            postgres.url("mlflow"),
            "--artifacts-destination",
            str(home / "artifacts"),
            "--serve-artifacts",
        ],
        "prefect": [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
    }
    processes = {}
    try:
        for name, command in commands.items():
            log = (home / f"{name}.log").open("w")
            processes[name] = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_healthy(f"http://127.0.0.1:{mlflow_port}/health", processes["mlflow"], home / "mlflow.log")
        wait_healthy(f"http://127.0.0.1:{prefect_port}/api/health", processes["prefect"], home / "prefect.log")
        yield Servers(f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{prefect_port}/api")
    finally:
        stop(processes.values())


def stop(processes: Iterable[subprocess.Popen]) -> None:
    """SIGTERM each process's group (a server and the workers it started), then SIGKILL what is left after 10 s."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)  # throwaway servers: no need to wait for a graceful shutdown
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_pipelines_at_once(env: dict[str, str], logs: Path, models: list[str]) -> None:
    """Start one `rlgen run pipeline` of `models` per seed, all at once, and wait until each has exited 0."""
    args = [
        "run",
        "pipeline",
        "--set",
        f"models={','.join(models)}",
        "--set",
        f"data_root={SHARED}",
        "--set",
        f"overrides={json.dumps(OVERRIDES)}",
    ]
    env = {**env, "COLUMNS": "200"}
    running = {}
    try:
        for seed in SEEDS:
            out = (logs / f"pipeline-s{seed}.log").open("w")
            command = [str(BIN / "rlgen"), *args, "--set", f"seed={seed}"]
            running[seed] = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 500
        for seed, process in running.items():
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert code == 0, (
                f"pipeline seed={seed} exited {code}:\n{(logs / f'pipeline-s{seed}.log').read_text()[-6000:]}"
            )
    finally:
        stop(p for p in running.values() if p.poll() is None)  # after a failure or a timeout


def check_store(client: MlflowClient, models: list[str]) -> dict[int, str]:
    """Both pipelines' runs, metric histories, artifacts and registry entries are whole; returns seed -> Prefect
    flow-run id."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    assert {r.info.run_name: r.info.status for r in runs if r.info.status != "FINISHED"} == {}
    children: dict[str, list] = {}
    for r in runs:
        children.setdefault(r.data.tags.get("mlflow.parentRunId", ""), []).append(r)
    pipelines = {int(r.data.params["seed"]): r for r in runs if r.data.tags.get("rlgen.family") == "pipeline"}
    assert sorted(pipelines) == list(SEEDS)
    spans = [(r.info.start_time, r.info.end_time) for r in pipelines.values()]
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans  # the pipelines ran at once

    trained: dict[str, set[str]] = {
        REGISTERED[model]: set() for model in models
    }  # registered name -> its training runs
    for seed, pipeline in pipelines.items():
        flows = {
            r.data.tags["rlgen.family"]: r
            for r in children[pipeline.info.run_id]
            if r.data.tags.get("rlgen.role") == "flow"
        }
        assert sorted(flows) == sorted(models), f"seed {seed}: flow runs {sorted(flows)}"
        for model, flow_run in flows.items():
            assert flow_run.data.tags["prefect.flow_run_id"] and flow_run.data.params["seed"] == str(seed)
            (train,) = [r for r in children[flow_run.info.run_id] if r.data.tags.get("rlgen.role") == "train"]
            trained[REGISTERED[model]].add(train.info.run_id)

            def history(key: str, run_id: str = train.info.run_id) -> list[int]:  # the steps of a metric's rows
                return sorted(m.step for m in client.get_metric_history(run_id, key))

            if model == "dqn":  # a loss row every log_every steps once training starts, one return per episode
                cfg = OVERRIDES["dqn"]
                assert history("train/loss") == list(
                    range(cfg["learning_starts"], cfg["total_steps"] + 1, cfg["log_every"])
                )
                assert len(history("rl/episodic_return")) == train.data.metrics["train/episodes"] > 0
                assert "eval/mean_return" in flow_run.data.metrics
            else:  # max_steps is below log_every: the last step's row only, and one validation row
                assert history("train/loss") == [OVERRIDES["vae"]["max_steps"]] == history("val/neg_elbo")
                assert "eval/iw_nll" in flow_run.data.metrics
            checkpoints = client.list_artifacts(train.info.run_id, "checkpoints")
            assert checkpoints and all(f.file_size > 0 for f in checkpoints), f"{model} seed {seed}: no checkpoint"

    for name, run_ids in trained.items():
        versions = [client.get_model_version(name, v.version) for v in client.search_model_versions(f"name='{name}'")]
        assert sorted(v.run_id for v in versions) == sorted(run_ids), f"{name}: one version per training run"
        for version in versions:  # each version is an MLflow model of its run, its files in the artifact store
            model_id = version.source.removeprefix("models:/")
            assert client.get_logged_model(model_id).source_run_id == version.run_id
            listed = [
                *client.list_logged_model_artifacts(model_id),
                *client.list_logged_model_artifacts(model_id, "artifacts"),
            ]
            files = {f.path: f.file_size for f in listed if not f.is_dir}
            assert "MLmodel" in files and all(files.values()), f"{name}/{version.version}: {files} at {version.source}"
            assert any(path.endswith(".pt") for path in files) and any(path.endswith(".pt2") for path in files)
        check_aliases(name, versions)
    return {seed: r.data.tags["prefect.flow_run_id"] for seed, r in pipelines.items()}


def check_aliases(name: str, versions: list) -> None:
    """One champion; each version's decision tags agree with the aliases, whichever pipeline promoted first."""
    holders = {alias: str(v.version) for v in versions for alias in v.aliases}  # a server sends versions as strings
    assert "champion" in holders and len(versions) == 2, f"{name}: aliases {holders}"
    champion = next(v for v in versions if str(v.version) == holders["champion"])
    other = next(v for v in versions if v is not champion)
    assert champion.tags["rlgen.decision"] == "champion"
    if other.tags["rlgen.decision"] == "challenger":  # promoted second, lost to the champion
        assert holders.get("challenger") == str(other.version) and other.tags["rlgen.champion_version"] == str(
            champion.version
        )
    else:  # promoted first, then beaten by the champion, which compared itself with it
        assert other.tags["rlgen.decision"] == "champion" and "challenger" not in holders
        assert champion.tags["rlgen.champion_version"] == str(other.version), (
            f"{name}: two first champions, a promotion race"
        )


def test_two_pipelines_at_once_through_mlflow_and_prefect_servers_on_postgres(servers: Servers, tmp_path: Path) -> None:
    models = ["dqn", "vae"]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": servers.mlflow,
        "PREFECT_API_URL": servers.prefect,
        "RLGEN_HOME": str(tmp_path),
    }
    run_pipelines_at_once(env, tmp_path, models)

    flow_run_ids = check_store(MlflowClient(tracking_uri=servers.mlflow, registry_uri=servers.mlflow), models)
    assert not (tmp_path / "mlruns").exists()  # nothing went to an embedded store
    response = httpx.post(f"{servers.prefect}/flow_runs/filter", json={}, timeout=30)
    response.raise_for_status()
    states = {run["id"]: run["state_type"] for run in response.json()}
    assert set(flow_run_ids.values()) <= set(states)  # the pipelines' MLflow runs name their Prefect flow runs
    assert len(states) == len(SEEDS) * (1 + len(models)) and set(states.values()) == {"COMPLETED"}, (
        states
    )  # with the subflows


def test_two_pipelines_at_once_on_one_embedded_store(prefect_server: str, store: Path, tmp_path: Path) -> None:
    # DQN alone (the test above covers an image model too): two processes creating, then writing, one SQLite store
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "RLGEN_HOME": str(store.parent)}
    env.pop("MLFLOW_TRACKING_URI", None)
    run_pipelines_at_once(env, tmp_path, ["dqn"])
    check_store(MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}"), ["dqn"])


def test_missing_postgres_binaries_are_an_error_that_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pg, "BIN_DIRS", [str(tmp_path / "nothing")])
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("RLGEN_TEST_PG_BIN", raising=False)
    with pytest.raises(
        FileNotFoundError, match=r"initdb, pg_ctl, postgres\) not found; looked in .*apt-get install postgresql-15"
    ):
        pg.find_bin()
