"""The Prefect tasks of every model flow: thin wrappers over rlgen.steps.

Tasks hand each other configs, small records (paths, run ids, metrics) and never tensors: every file a task
writes goes into the tracking store. Data prep needs no Prefect cache policy: the data is cached by the
SHA-256 of its content and split, so a rerun reuses it, and a changed file is never served stale.
"""

from __future__ import annotations

from typing import Any

from prefect import Task, task

from rlgen import steps
from rlgen.config.base import TrainConfig
from rlgen.errors import ConfigError, DownloadError, TrainingDiverged
from rlgen.family import ModelResult, Trained
from rlgen.tracking.lifecycle import tag_task_run
from rlgen.tracking.promotion import Decision
from rlgen.tracking.registry import ModelVersion

# Errors a retry would only repeat: the same config, data and seeded RNGs fail the same way again.
NOT_RETRIED = (ConfigError, ValueError, TrainingDiverged, KeyboardInterrupt)


def retry_only_downloads(task: object, task_run: object, state: Any) -> bool:
    """Retry a failed download, never bad local data or a bad config."""
    error = getattr(state, "data", None)
    return isinstance(error, DownloadError) or not isinstance(error, ValueError)


def _retryable(task: object, task_run: object, state: Any) -> bool:
    return not isinstance(state.data, NOT_RETRIED)


@task(
    name="prepare-data",
    task_run_name="prepare-{cfg.family}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_only_downloads,
)
def prepare_task(cfg: TrainConfig) -> Any:
    return steps.prepare(cfg)


@task(name="report-data", task_run_name="report-data-{cfg.family}")
def report_data_task(cfg: TrainConfig, prepared: Any, run_id: str) -> None:
    steps.report_data(cfg, prepared, run_id)


@task(name="evaluation-context", task_run_name="evaluation-context-{cfg.family}")
def context_task(cfg: TrainConfig, prepared: Any, parent_id: str) -> Any:
    return steps.context(cfg, prepared, parent_id)


@task(name="train", task_run_name="train-{cfg.family}")
def train_task(cfg: TrainConfig, prepared: Any, run_id: str, context: Any = None) -> Trained:
    tag_task_run(run_id)
    return steps.train_model(cfg, prepared, run_id, context=context)


def with_retries(cfg: TrainConfig) -> Task[..., Trained]:
    """The training task with the config's Prefect retries; each retry goes on from the run's last checkpoint."""
    return train_task.with_options(retries=cfg.retries, retry_delay_seconds=2, retry_condition_fn=_retryable)


@task(name="evaluate", task_run_name="evaluate-{cfg.family}")
def evaluate_task(cfg: TrainConfig, prepared: Any, trained: Trained, context: Any) -> dict[str, float]:
    tag_task_run(trained.run_id)
    return steps.evaluate(cfg, prepared, trained, context)


@task(name="export", task_run_name="export-{cfg.family}")
def export_task(cfg: TrainConfig, prepared: Any, trained: Trained) -> str:
    tag_task_run(trained.run_id)
    return steps.export(cfg, prepared, trained)


@task(name="register", task_run_name="register-{cfg.family}")
def register_task(cfg: TrainConfig, run_id: str, model_uri: str, metrics: dict[str, float]) -> ModelVersion:
    tag_task_run(run_id)
    return steps.register(cfg, run_id, model_uri, metrics)


@task(name="promote", task_run_name="promote-{cfg.family}")
def promote_task(cfg: TrainConfig, version: ModelVersion, metrics: dict[str, float], prepared: Any) -> Decision:
    return steps.promote_version(cfg, version, metrics, prepared)


@task(name="summarize", task_run_name="summarize-{cfg.family}")
def summarize_task(
    cfg: TrainConfig,
    parent_id: str,
    trained: Trained,
    metrics: dict[str, float],
    version: ModelVersion,
    decision: Decision,
) -> ModelResult:
    return steps.summarize(cfg, parent_id, trained, metrics, version, decision)
