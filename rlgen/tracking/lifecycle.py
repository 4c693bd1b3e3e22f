"""The MLflow runs of a flow: one parent per flow run, one child per trained model, tied to the Prefect run.

Also what `--resume RUN_ID` needs before any work: the stored config and the training run to reopen.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from mlflow.entities import Run
from prefect.runtime import flow_run, task_run

from rlgen.checkpoints import lock as run_lock
from rlgen.checkpoints.io import load_checkpoint, run_checkpoint_path
from rlgen.checkpoints.lock import RunBusy
from rlgen.checkpoints.stop import stop_scope
from rlgen.config.base import RunConfig, TrainConfig, validate_config
from rlgen.errors import ConfigError
from rlgen.tracking.artifacts import download, temp_dir
from rlgen.tracking.crashes import close_crashed
from rlgen.tracking.heartbeat import HEARTBEAT_TAG, TIMEOUT_ENV, decode, this_worker, timeout_s
from rlgen.tracking.runs import (
    PARENT_TAG,
    child_runs,
    get_run,
    log_config,
    run,
    set_tags,
)
from rlgen.tracking.store import experiment_id


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
    return this_worker()


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
    if role == "flow" and parent_id is None and reopen is None:  # a new command looks at the store: close crashes
        close_crashed(experiment_ids=[experiment_id(cfg.experiment)])
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
    run_lock.acquire(train_id)  # held until this process ends: a second --resume of the run is refused
    try:
        step = int(load_checkpoint(checkpoint)["step"])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"cannot resume run {train_id}: {err}. Delete it to start the run's training over, or start a new run."
        ) from None
    _close_if_crashed(found, step)
    with temp_dir() as tmp:
        stored = json.loads(Path(download(train_id, "config.json", Path(tmp))).read_text())
    return validate_config(config_cls, stored), train_id


def _close_if_crashed(train: Run, step: int) -> None:
    """Before `--resume`: a crashed training run and its parent are marked FAILED (and their Prefect flow runs
    Crashed); ConfigError if the run is still alive in another process."""
    ids = [train.info.run_id] + ([parent] if (parent := train.data.tags.get(PARENT_TAG)) else [])
    close_crashed(run_ids=ids, checkpoint_step=step)
    current = get_run(train.info.run_id)
    if current.info.status == "RUNNING":
        beat = decode(current.data.tags.get(HEARTBEAT_TAG))
        who = f"process {beat.worker}, last heartbeat {time.time() - beat.time:.0f} s ago" if beat else "no heartbeat"
        raise RunBusy(
            f"cannot resume run {train.info.run_id}: it is still RUNNING ({who}; a run counts as crashed after "
            f"{timeout_s():g} s without one, {TIMEOUT_ENV}). Wait until it ends or stop it, or wait for its "
            "heartbeat to time out, then resume it."
        )
