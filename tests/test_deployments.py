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
