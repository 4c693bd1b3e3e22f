"""The MLflow runs of a flow: one parent per flow run, one child per trained model, tied to the Prefect run.

Also what `--resume RUN_ID` needs before any work: the stored config and the training run to reopen.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from prefect.runtime import flow_run, task_run

from rlgen.checkpoints.io import load_checkpoint, run_checkpoint_path
from rlgen.checkpoints.stop import stop_scope
from rlgen.config.base import RunConfig, TrainConfig, validate_config
from rlgen.errors import ConfigError
from rlgen.tracking.artifacts import download, temp_dir
from rlgen.tracking.runs import (
    PARENT_TAG,
    child_runs,
    get_run,
    log_config,
    run,
    set_tags,
)


def run_name(cfg: RunConfig, subject: str) -> str:
    """Names that sort by time: `dqn-CartPole-v1-s1-20261122T120000`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{subject}-s{cfg.seed}-{stamp}"


def prefect_tags() -> dict[str, str]:
    """The Prefect flow run (and task run, inside one) this MLflow run belongs to; empty outside a flow run."""
    if flow_run.id is None:
        return {}
    tags = {
        "prefect.flow_run_id": str(flow_run.id),
        "prefect.flow_run_name": str(flow_run.name),
        "prefect.flow_name": str(flow_run.flow_name),
    }
    if task_run.id is not None:
        tags |= {"prefect.task_run_id": str(task_run.id), "prefect.task_run_name": str(task_run.name)}
    return tags


def tag_task_run(run_id: str) -> None:
    """Link the Prefect task run this code runs in to an MLflow run: `prefect.task_run.<task name>` = its id."""
    if task_run.id is not None:
        set_tags(run_id, {f"prefect.task_run.{task_run.task_name}": str(task_run.id)})


def worker() -> str:
    """`host:pid` of this process: where a run ran (a pipeline branch on a Dask or Ray worker, say)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def tracked_run(
    cfg: RunConfig, subject: str, parent_id: str | None = None, role: str = "flow", resume: str | None = None
) -> Iterator[str]:
    """Open an MLflow run for `cfg` with its params, config.json and Prefect tags; yield its id.

    With `resume` (a training run's id), the training run itself (role "train") or its parent (role
    "flow") is reopened instead. A flow's run opens the stop-request scope of everything inside it, and
    SIGINT / SIGTERM (in the main thread) stop training at a step boundary while it is open. A training
    run's resumable checkpoint is removed once the run FINISHED.
    """
    tags = {"rlgen.family": getattr(cfg, "family", ""), "rlgen.role": role, "rlgen.worker": worker(), **prefect_tags()}
    reopen = None
    if resume is not None:
        reopen = resume if role == "train" else get_run(resume).data.tags.get(PARENT_TAG)
    name = run_name(cfg, subject if role == "flow" else f"{subject}-{role}")
    with ExitStack() as stack:
        if role == "flow":
            stack.enter_context(stack.enter_context(stop_scope()).on_signals())
        run_id = stack.enter_context(run(cfg.experiment, name, tags=tags, parent_id=parent_id, reopen=reopen))
        if reopen is None:
            log_config(run_id, cfg)
        else:
            set_tags(run_id, prefect_tags())
        yield run_id
    if role == "train":
        shutil.rmtree(run_checkpoint_path(run_id).parent, ignore_errors=True)


def resume_target(config_cls: type[TrainConfig], run_id: str) -> tuple[TrainConfig, str]:
    """The config and the training run id to pass a flow for `--resume RUN_ID`.

    RUN_ID is the training run or its flow's parent run. Raises ConfigError, before any work, when the run
    does not exist, belongs to another family, has finished, or has no checkpoint on this machine.
    """
    try:
        found = get_run(run_id)
    except LookupError as err:
        raise ConfigError(f"cannot resume: {err}. `rlgen runs` lists the runs of this store.") from None
    family = found.data.tags.get("rlgen.family")
    if family != config_cls.family:
        raise ConfigError(
            f"cannot resume run {run_id}: it is a {family or 'non-rlgen'} run, not a {config_cls.family} run."
        )
    if found.data.tags.get("rlgen.role") == "flow":
        trains = [r for r in child_runs(run_id) if r.data.tags.get("rlgen.role") == "train"]
        if not trains:
            raise ConfigError(
                f"cannot resume run {run_id}: it has no training run (it failed before training started); start a new "
                "run."
            )
        found = trains[-1]
    train_id = found.info.run_id
    if found.info.status == "FINISHED":
        raise ConfigError(f"cannot resume run {train_id}: it already FINISHED; its model is in the registry.")
    checkpoint = run_checkpoint_path(train_id)
    if not checkpoint.is_file():
        raise ConfigError(
            f"cannot resume run {train_id}: it has no checkpoint at {checkpoint} (it stopped before its first "
            "checkpoint, "
            "or ran on another machine or with another RLGEN_HOME); start a new run."
        )
    try:
        load_checkpoint(checkpoint)
    except ValueError as err:
        raise ConfigError(
            f"cannot resume run {train_id}: {err}. Delete it to start the run's training over, or start a new run."
        ) from None
    with temp_dir() as tmp:
        stored = json.loads(Path(download(train_id, "config.json", Path(tmp))).read_text())
    return validate_config(config_cls, stored), train_id
