"""The MLflow runs of a flow: one parent per flow run, one child per trained model."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from prefect import Task
from prefect.runtime import flow_run, task_run

from models.common import NonFiniteLoss, device_available, prepare_device, resolve_device
from models.langevin import LangevinDivergence
from rlgen.config import ConfigError, RunConfig, TrainConfig, validate_config
from tasks import tracking
from tasks.checkpoint import load_checkpoint, run_checkpoint_path, stop_at_step_boundaries


def training_device(cfg: RunConfig) -> torch.device:
    """The device a config asks for; raises ConfigError if this machine does not have it."""
    device = resolve_device(cfg.device)
    if not device_available(device):
        raise ConfigError(f"device={cfg.device!r} is not available on this machine; use --set device=cpu or auto.")
    prepare_device(device)
    return device


def run_name(cfg: RunConfig, subject: str) -> str:
    """Names that sort by time: `dqn-CartPole-v1-s1-20261122T120000`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{subject}-s{cfg.seed}-{stamp}"


def prefect_tags() -> dict[str, str]:
    """The Prefect flow run (and task run, inside one) this MLflow run belongs to; empty outside a flow run."""
    if flow_run.id is None:
        return {}
    tags = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name), "prefect.flow_name": str(flow_run.flow_name)}
    if task_run.id is not None:
        tags |= {"prefect.task_run_id": str(task_run.id), "prefect.task_run_name": str(task_run.name)}
    return tags


def worker() -> str:
    """`host:pid` of this process: where a run ran (a pipeline branch on a Dask or Ray worker, say)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def tracked_run(cfg: RunConfig, subject: str, parent_id: str | None = None, role: str = "flow", resume: str | None = None) -> Iterator[str]:
    """Open an MLflow run for `cfg` with its params, config.json and Prefect tags; yield its id.

    With `resume` (a training run's id), the training run itself (role "train") or its parent (role
    "flow") is reopened instead. A training run's resumable checkpoint is removed once the run FINISHED.
    """
    tags = {"rlgen.family": getattr(cfg, "family", ""), "rlgen.role": role, "rlgen.worker": worker(), **prefect_tags()}
    reopen = None
    if resume is not None:
        reopen = resume if role == "train" else tracking.get_run(resume).data.tags.get(tracking.PARENT_TAG)
    name = run_name(cfg, subject if role == "flow" else f"{subject}-{role}")
    watch = stop_at_step_boundaries() if role == "flow" else contextlib.nullcontext()
    with watch, tracking.run(cfg.experiment, name, tags=tags, parent_id=parent_id, reopen=reopen) as run_id:
        if reopen is None:
            tracking.log_config(run_id, cfg)
        else:
            tracking.set_tags(run_id, prefect_tags())
        yield run_id
    if role == "train":
        shutil.rmtree(run_checkpoint_path(run_id).parent, ignore_errors=True)


# Errors a retry would only repeat: the same config, data and seeded RNGs fail the same way again.
NOT_RETRIED = (ConfigError, ValueError, NonFiniteLoss, LangevinDivergence, KeyboardInterrupt)


def _retryable(task: Task, run: Any, state: Any) -> bool:
    return not isinstance(state.data, NOT_RETRIED)


def with_retries(train_task: Task, cfg: TrainConfig) -> Task:
    """`train_task` with the config's Prefect retries; each retry goes on from the run's last checkpoint."""
    return train_task.with_options(retries=cfg.retries, retry_delay_seconds=2, retry_condition_fn=_retryable)


def resume_target(config_cls: type[TrainConfig], run_id: str) -> tuple[TrainConfig, str]:
    """The config and the training run id to pass a flow for `--resume RUN_ID`.

    RUN_ID is the training run or its flow's parent run. Raises ConfigError, before any work, when the run
    does not exist, belongs to another family, has finished, or has no checkpoint on this machine.
    """
    try:
        run = tracking.get_run(run_id)
    except LookupError as err:
        raise ConfigError(f"cannot resume: {err}. `rlgen runs` lists the runs of this store.") from None
    family = run.data.tags.get("rlgen.family")
    if family != config_cls.family:
        raise ConfigError(f"cannot resume run {run_id}: it is a {family or 'non-rlgen'} run, not a {config_cls.family} run.")
    if run.data.tags.get("rlgen.role") == "flow":
        trains = [r for r in tracking.child_runs(run_id) if r.data.tags.get("rlgen.role") == "train"]
        if not trains:
            raise ConfigError(f"cannot resume run {run_id}: it has no training run (it failed before training started); start a new run.")
        run = trains[-1]
    train_id = run.info.run_id
    if run.info.status == "FINISHED":
        raise ConfigError(f"cannot resume run {train_id}: it already FINISHED; its model is in the registry.")
    checkpoint = run_checkpoint_path(train_id)
    if not checkpoint.is_file():
        raise ConfigError(
            f"cannot resume run {train_id}: it has no checkpoint at {checkpoint} (it stopped before its first checkpoint, "
            "or ran on another machine or with another RLGEN_HOME); start a new run."
        )
    try:
        load_checkpoint(checkpoint)
    except ValueError as err:
        raise ConfigError(f"cannot resume run {train_id}: {err}. Delete it to start the run's training over, or start a new run.") from None
    with tracking.temp_dir() as tmp:
        stored = json.loads(Path(tracking.download(train_id, "config.json", Path(tmp))).read_text())
    return validate_config(config_cls, stored), train_id
