"""Closing crashed runs: a RUNNING run whose heartbeat stopped is marked FAILED, and its Prefect flow run Crashed.

`rlgen runs`, every new top-level flow run, `--resume` and `rlgen sync` call `close_crashed`, so a run killed
with kill -9 (or lost with its machine) does not stay RUNNING: the next rlgen command that looks closes it,
with the tag `rlgen.crashed` saying why and at which step its last checkpoint is.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple
from uuid import UUID

from mlflow.entities import Run, RunStatus, RunTag

from rlgen.checkpoints.io import checkpoint_step as read_step
from rlgen.checkpoints.io import run_checkpoint_path
from rlgen.tracking.heartbeat import CRASHED_TAG, HEARTBEAT_TAG, crash_reason, decode
from rlgen.tracking.store import client

log = logging.getLogger(__name__)
FLOW_RUN_TAG = "prefect.flow_run_id"


class Crash(NamedTuple):
    run_id: str
    reason: str  # what the `rlgen.crashed` tag says
    flow_run_id: str | None  # the Prefect flow run it belonged to


def close_crashed(
    run_ids: list[str] | None = None, experiment_ids: list[str] | None = None, checkpoint_step: int | None = None
) -> list[Crash]:
    """Mark every crashed RUNNING run among `run_ids` (default: all runs of `experiment_ids`, default every
    experiment) FAILED with its reason, and their Prefect flow runs Crashed; the runs closed.

    `checkpoint_step` (known to `--resume`, which reads the checkpoint) wins over what the last heartbeat said.
    """
    mlflow = client()
    if run_ids is not None:
        found = [mlflow.get_run(run_id) for run_id in run_ids]
    else:
        experiments = experiment_ids or [e.experiment_id for e in mlflow.search_experiments()]
        running = "attributes.status = 'RUNNING'"
        found = list(mlflow.search_runs(experiments, running, max_results=1000)) if experiments else []
    now, closed = time.time(), []
    for run in found:
        reason = crash_reason(run, now)
        if reason is None:
            continue
        text = f"crashed: {reason}; {_where(run, checkpoint_step)}; marked FAILED by rlgen at " + time.strftime(
            "%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)
        )
        mlflow.log_batch(run.info.run_id, tags=[RunTag(CRASHED_TAG, text)])
        mlflow.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FAILED))
        closed.append(Crash(run.info.run_id, text, run.data.tags.get(FLOW_RUN_TAG)))
        log.warning("run %s %s", run.info.run_id, text)
    for flow_run_id in dict.fromkeys(c.flow_run_id for c in closed if c.flow_run_id):
        _crash_flow_run(flow_run_id, next(c.reason for c in closed if c.flow_run_id == flow_run_id))
    return closed


def _where(run: Run, checkpoint_step: int | None) -> str:
    """Where the run can go on from: its last checkpoint's step, or why there is none."""
    tags = run.data.tags
    if tags.get("rlgen.role") == "flow":
        return "it holds no checkpoint itself (its training run does)"
    beat = decode(tags.get(HEARTBEAT_TAG))
    if checkpoint_step is None:  # the file, where this machine has it, is newer than the last heartbeat
        checkpoint_step = read_step(run_checkpoint_path(run.info.run_id))
    step = checkpoint_step if checkpoint_step is not None else beat.checkpoint_step if beat else None
    family = tags.get("rlgen.family", "FAMILY")
    if step is None:
        return "no checkpoint had been written; start a new run"
    return f"its last checkpoint is at step {step}; continue with `rlgen run {family} --resume {run.info.run_id}`"


def _crash_flow_run(flow_run_id: str, reason: str) -> None:
    """Set a Prefect flow run that is still running (or pending) to Crashed; a warning if Prefect cannot be reached."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as prefect:
            flow_run = prefect.read_flow_run(UUID(flow_run_id))
            if flow_run.state is not None and flow_run.state.is_final():
                return
            prefect.set_flow_run_state(flow_run.id, Crashed(message=f"MLflow run {reason}"), force=True)
    except Exception as err:  # Prefect down, or the flow run is gone: the MLflow side is closed already
        log.warning("could not mark Prefect flow run %s crashed: %s: %s", flow_run_id, err.__class__.__name__, err)
