"""prefect.yaml and `rlgen serve` declare one deployment per flow, the pipeline on a weekly schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from rlgen.config import validate_config
from rlgen.deployments import deployments, entrypoint_file, prefect_yaml
from rlgen.pipeline import commands
from rlgen.pipeline.config import PipelineConfig

COMMANDS = commands()

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_is_generated_from_the_registry() -> None:
    text = (ROOT / "prefect.yaml").read_text()
    assert text == prefect_yaml(), "prefect.yaml is stale: python -m rlgen.deployments > prefect.yaml"


def test_prefect_yaml_has_a_valid_deployment_for_every_flow() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == set(COMMANDS)
    for name, deployment in by_name.items():
        assert deployment["entrypoint"] == entrypoint_file(COMMANDS[name])
        path, _, attribute = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file() and COMMANDS[name].load_flow().name == name
        assert deployment["work_pool"]["name"] == "rlgen-process"
        validate_config(COMMANDS[name].config, deployment.get("parameters", {}).get("config", {}))
    (schedule,) = by_name["pipeline"]["schedules"]
    assert schedule["cron"] == "0 3 * * 1" and schedule["active"]


def test_served_deployments_match_the_flows() -> None:
    served = {d.name: d for d in deployments(PipelineConfig(profile="full"), "0 3 * * 1")}
    assert set(served) == set(COMMANDS)
    (schedule,) = served["pipeline"].schedules
    assert schedule.schedule.cron == "0 3 * * 1"
    assert served["pipeline"].parameters["config"]["profile"] == "full"
    assert not served["vae"].schedules


def test_rlgen_serve_registers_every_deployment_and_runs_them(prefect_server: str, store: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx
    from test_server_path import TINY_DQN

    env = {**os.environ, "PREFECT_API_URL": prefect_server, "RLGEN_HOME": str(store.parent)}
    rlgen = Path(sys.executable).with_name("rlgen")
    served = subprocess.Popen(
        [str(rlgen), "serve", "--cron", "0 3 * * 1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            found = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=10).json()
            names = {d["name"] for d in found}
            if set(COMMANDS) <= names:
                break
            assert served.poll() is None and time.monotonic() < deadline, f"served: {names}"
            time.sleep(1)
        pipeline = next(d for d in found if d["name"] == "pipeline")
        assert [s["schedule"]["cron"] for s in pipeline["schedules"]] == ["0 3 * * 1"]
        dqn = next(d for d in found if d["name"] == "dqn")
        for _ in range(
            10
        ):  # 503: the server's database is busy with the served deployments; Prefect's clients retry it too
            response = httpx.post(
                f"{prefect_server}/deployments/{dqn['id']}/create_flow_run",
                json={"parameters": {"config": TINY_DQN}},
                timeout=10,
            )
            if response.status_code != 503:
                break
            time.sleep(1)
        run = response.json()
        assert "id" in run, run
        while (
            state := httpx.get(f"{prefect_server}/flow_runs/{run['id']}", timeout=10).json()["state_type"]
        ) != "COMPLETED":
            assert state not in {"FAILED", "CRASHED"} and time.monotonic() < deadline + 180, state
            time.sleep(2)
        from mlflow.tracking import MlflowClient

        mlflow = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
        (experiment,) = [e for e in mlflow.search_experiments() if e.name != "Default"]
        trained = [
            r for r in mlflow.search_runs([experiment.experiment_id]) if r.data.tags.get("rlgen.role") == "train"
        ]
        (train,) = trained
        assert train.info.status == "FINISHED" and train.data.tags["prefect.flow_run_id"] == run["id"]
        assert {k: train.data.params[k] for k in TINY_DQN} == {k: str(v) for k, v in TINY_DQN.items()}  # our config
        (version,) = mlflow.search_model_versions("name='dqn-CartPole-v1'")  # the served flow registered it
        assert version.run_id == train.info.run_id
    finally:
        served.terminate()
        served.wait(timeout=30)


def next_weekly(cron_weekday: int, hour: int, after: datetime) -> datetime:
    """The first time after `after` (UTC) on ISO weekday `cron_weekday` (cron's: Monday 1) at `hour`:00."""
    day = after.replace(hour=hour, minute=0, second=0, microsecond=0)
    day += timedelta(days=(cron_weekday - day.isoweekday()) % 7)
    return day if day > after else day + timedelta(days=7)


def test_prefect_deploy_all_from_the_repositorys_prefect_yaml(prefect_server: str, store: Path) -> None:
    """What a team does with the repository: `prefect deploy --all` against its Prefect server, the weekly pipeline
    scheduled for next Monday 03:00 UTC, and a deployment run to completion by a process worker."""
    import os
    import subprocess
    import sys
    import time

    import httpx
    from mlflow.tracking import MlflowClient
    from test_server_path import TINY_DQN

    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "RLGEN_HOME": str(store.parent),
        "PREFECT_CLI_PROMPT": "false",
        "COLUMNS": "200",
    }
    prefect = [str(Path(sys.executable).with_name("prefect"))]

    def run(*args: str, timeout: float = 180) -> str:
        done = subprocess.run([*prefect, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run("work-pool", "create", "rlgen-process", "--type", "process", "--overwrite")
    run("--no-prompt", "deploy", "--all")
    found = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=30).json()
    deployed = {d["name"]: d for d in found if d.get("work_pool_name") == "rlgen-process"}
    assert set(deployed) == set(COMMANDS)
    for name, deployment in deployed.items():
        assert deployment["entrypoint"] == entrypoint_file(COMMANDS[name])

    pipeline = deployed["pipeline"]
    assert [s["schedule"]["cron"] for s in pipeline["schedules"]] == ["0 3 * * 1"]
    now = datetime.now(UTC)
    response = httpx.post(
        f"{prefect_server}/deployments/{pipeline['id']}/schedule",
        json={"end_time": (now + timedelta(days=15)).isoformat(), "min_runs": 2, "max_runs": 3},
        timeout=30,
    )
    response.raise_for_status()
    filters = {"flow_runs": {"deployment_id": {"any_": [pipeline["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}
    scheduled = httpx.post(f"{prefect_server}/flow_runs/filter", json=filters, timeout=30).json()
    starts = sorted(datetime.fromisoformat(r["expected_start_time"]) for r in scheduled)
    assert starts[0] == next_weekly(1, 3, now), starts  # next Monday, 03:00 UTC
    assert starts[1] - starts[0] == timedelta(days=7)

    dqn = deployed["dqn"]
    flow_run = httpx.post(
        f"{prefect_server}/deployments/{dqn['id']}/create_flow_run",
        json={"parameters": {"config": TINY_DQN}},
        timeout=30,
    ).json()
    run("worker", "start", "--pool", "rlgen-process", "--run-once", timeout=420)
    state = httpx.get(f"{prefect_server}/flow_runs/{flow_run['id']}", timeout=10).json()["state_type"]
    deadline = time.monotonic() + 60
    while state not in {"COMPLETED", "FAILED", "CRASHED"} and time.monotonic() < deadline:
        time.sleep(1)
        state = httpx.get(f"{prefect_server}/flow_runs/{flow_run['id']}", timeout=10).json()["state_type"]
    assert state == "COMPLETED", state
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = mlflow.search_runs([e.experiment_id for e in mlflow.search_experiments()])
    trained = [r for r in runs if r.data.tags.get("prefect.flow_run_id") == flow_run["id"]]
    assert trained and {r.info.status for r in trained} == {"FINISHED"}
    assert {r.data.params["total_steps"] for r in trained if r.data.tags.get("rlgen.role") == "train"} == {
        str(TINY_DQN["total_steps"])
    }
