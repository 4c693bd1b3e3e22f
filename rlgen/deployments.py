"""Deployments of rlgen's flows: served from one process by `rlgen serve`, and declared for workers in
prefect.yaml, which `python -m rlgen.deployments` writes from the registry (a test checks it)."""

from __future__ import annotations

import sys
from typing import Any, cast

import yaml

from rlgen.family import Command
from rlgen.pipeline import PIPELINE, commands
from rlgen.pipeline.config import PipelineConfig

WEEKLY = "0 3 * * 1"  # the pipeline's retraining: Mondays 03:00 UTC
POOL = "rlgen-process"


def deployments(config: PipelineConfig, cron: str | None) -> list[Any]:
    """One deployment per flow, named like the flow; the pipeline's carries `config` and the cron schedule."""
    from prefect.deployments.runner import RunnerDeployment

    out: list[RunnerDeployment] = []
    for name, command in commands().items():
        flow = command.load_flow()
        if command is PIPELINE:
            parameters = {"config": config.model_dump(mode="json")}
            made = flow.to_deployment(name=name, cron=cron, parameters=parameters, tags=["rlgen", "retraining"])
        else:
            made = flow.to_deployment(name=name, tags=["rlgen"])
        out.append(cast(RunnerDeployment, made))  # a coroutine only when called from async code
    return out


def serve_all(config: PipelineConfig, cron: str | None) -> None:
    """Serve every deployment from this process until interrupted (schedules run while it lives)."""
    from prefect import serve

    serve(*deployments(config, cron))


def entrypoint_file(command: Command) -> str:
    """The entrypoint as prefect.yaml writes it: `flows/models.py:vae_flow`."""
    module, _, attribute = command.flow_entrypoint.rpartition(".")
    return f"{module.replace('.', '/')}.py:{attribute}"


def prefect_yaml() -> str:
    """The text of prefect.yaml: every deployment, for a Prefect server and a process work pool."""
    pool = {"name": POOL, "job_variables": {"env": {"PREFECT_LOGGING_EXTRA_LOGGERS": "models,tasks,flows,rlgen"}}}
    entries: list[dict[str, Any]] = []
    for name, command in commands().items():
        entry: dict[str, Any] = {"name": name, "entrypoint": entrypoint_file(command), "description": command.summary}
        if command is PIPELINE:
            entry |= {
                "tags": ["rlgen", "retraining"],
                "parameters": {"config": {"profile": "quick"}},
                "schedules": [{"cron": WEEKLY, "timezone": "UTC", "active": True}],
            }
        else:
            entry["tags"] = ["rlgen"]
        entry["work_pool"] = pool
        entries.append(entry)
    document = {
        "name": "rlgen",
        "prefect-version": "3.8.8",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}],
        "deployments": entries,
    }
    header = (
        "# Prefect deployments of rlgen's flows, for a Prefect server and a process work pool. Generated from the\n"
        "# family registry by `python -m rlgen.deployments > prefect.yaml`; a test checks it is current.\n"
        "#   prefect work-pool create rlgen-process --type process\n"
        "#   prefect deploy --all                 # from the repository root\n"
        "#   prefect worker start --pool rlgen-process\n"
        "#   prefect deployment run pipeline/pipeline     (or dqn/dqn, vae/vae, ...)\n"
        "# Overrides go under `parameters.config`, with the same keys as `rlgen run NAME --set KEY=VALUE`.\n"
        "# Without a server, `rlgen serve` serves the same deployments from one process.\n"
    )
    return header + yaml.dump(document, Dumper=_Plain, sort_keys=False, width=120)


class _Plain(yaml.SafeDumper):
    """YAML without anchors and aliases: every deployment spells out its work pool."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


if __name__ == "__main__":
    sys.stdout.write(prefect_yaml())
