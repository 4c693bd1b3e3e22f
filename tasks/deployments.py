"""Deployments of rlgen's flows for `rlgen serve`: the same set as prefect.yaml declares for workers."""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from rlgen.config.pipeline import PipelineConfig
from rlgen.registry import COMMANDS


def deployments(config: PipelineConfig, cron: str | None) -> list[RunnerDeployment]:
    """One deployment per flow, named like the flow; the pipeline's carries `config` and the cron schedule."""
    out = []
    for name, spec in COMMANDS.items():
        flow = spec.load_flow()
        if name == "pipeline":
            parameters = {"config": config.model_dump(mode="json")}
            out.append(flow.to_deployment(name=name, cron=cron, parameters=parameters, tags=["rlgen", "retraining"]))
        else:
            out.append(flow.to_deployment(name=name, tags=["rlgen"]))
    return out


def serve_all(config: PipelineConfig, cron: str | None) -> None:
    """Serve every deployment from this process until interrupted (schedules run while it lives)."""
    serve(*deployments(config, cron))
