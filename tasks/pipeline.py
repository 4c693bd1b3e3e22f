"""The pipeline's Prefect tasks: shared data prep, one branch (a model flow), the report."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from rlgen.family import ModelResult
from rlgen.pipeline.branches import BranchResult, prepare_shared, run_branch
from rlgen.pipeline.config import PipelineConfig
from rlgen.pipeline.report import write_report


@task(name="pipeline-prepare", retries=1, retry_delay_seconds=5)
def prepare_task(cfg: PipelineConfig, parent_id: str) -> list[str]:
    return prepare_shared(cfg, parent_id)


@task(name="pipeline-branch", task_run_name="branch-{name}")
def branch_task(cfg: PipelineConfig, name: str, parent_id: str) -> ModelResult:
    return run_branch(cfg, name, parent_id)


@task(name="pipeline-report")
def report_task(cfg: PipelineConfig, results: list[BranchResult], parent_id: str) -> str:
    text = write_report(cfg, results, parent_id)
    create_markdown_artifact(text, key="rlgen-pipeline-report", description=f"rlgen pipeline, {cfg.profile} profile")
    return text
