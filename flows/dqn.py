"""The DQN flow: environment spec -> train -> evaluate -> export -> register."""

from __future__ import annotations

from typing import NamedTuple

from prefect import flow

from rlgen.config import DQNConfig
from tasks import dqn, promotion
from tasks.runs import tracked_run, with_retries


class DQNResult(NamedTuple):
    parent_run_id: str
    run_id: str
    mean_return: float
    solved: bool
    model_name: str
    model_version: str
    alias: str  # champion or challenger


@flow(name="dqn", log_prints=True)
def dqn_flow(config: DQNConfig = DQNConfig(), parent_run_id: str | None = None, resume_run_id: str | None = None) -> DQNResult:
    """Train a DQN agent on a Gymnasium environment, evaluate, export and register its greedy policy."""
    spec = dqn.env_spec_task(config)
    with tracked_run(config, config.registered_name, parent_run_id, resume=resume_run_id) as parent_id:
        with tracked_run(config, config.registered_name, parent_id, role="train", resume=resume_run_id) as run_id:
            trained = with_retries(dqn.train_task, config)(config, spec, run_id)
            report = dqn.evaluate_task(config, spec, trained)
            policy_dir = dqn.export_task(config, spec, trained)
            version = dqn.register_task(config, trained, policy_dir, report)
            decision = promotion.promote_task(version, "dqn", {"eval/mean_return": report.mean_return}, dqn.evaluation_key(config))
        dqn.summarize_task(parent_id, trained, report, version)
    return DQNResult(parent_id, run_id, report.mean_return, report.solved, version.name, version.version, decision.alias)
