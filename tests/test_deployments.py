"""prefect.yaml and `rlgen serve` declare one deployment per flow, the pipeline on a weekly schedule."""

from __future__ import annotations

from pathlib import Path

import yaml

from rlgen.config import validate_config
from rlgen.config.pipeline import PipelineConfig
from rlgen.registry import COMMANDS
from tasks.deployments import deployments

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_has_a_valid_deployment_for_every_flow() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == set(COMMANDS)
    for name, deployment in by_name.items():
        module, _, function = deployment["entrypoint"].partition(":")
        assert f"{module.removesuffix('.py').replace('/', '.')}:{function}" == COMMANDS[name].flow
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
    import json
    import os
    import subprocess
    import sys
    import time

    import httpx

    from test_server_path import TINY_DQN

    env = {**os.environ, "PREFECT_API_URL": prefect_server, "RLGEN_HOME": str(store.parent)}
    rlgen = Path(sys.executable).with_name("rlgen")
    served = subprocess.Popen([str(rlgen), "serve", "--cron", "0 3 * * 1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
        run = httpx.post(f"{prefect_server}/deployments/{dqn['id']}/create_flow_run", json={"parameters": {"config": TINY_DQN}}, timeout=10).json()
        assert "id" in run, run
        while (state := httpx.get(f"{prefect_server}/flow_runs/{run['id']}", timeout=10).json()["state_type"]) != "COMPLETED":
            assert state not in {"FAILED", "CRASHED"} and time.monotonic() < deadline + 180, state
            time.sleep(2)
        assert json.loads(json.dumps(run["parameters"]))["config"]["total_steps"] == TINY_DQN["total_steps"]
    finally:
        served.terminate()
        served.wait(timeout=30)
