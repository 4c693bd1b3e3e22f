"""MLflow runs: open, reopen and close them, and record params, tags and metrics on them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from rlgen.tracking import heartbeat
from rlgen.tracking.artifacts import log_dict
from rlgen.tracking.secrets import mask_secrets
from rlgen.tracking.store import client, experiment_id, tracking_uri, unreachable

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RESUMED_TAG = "rlgen.resumed"  # how many times a run was reopened to go on
MAX_PARAM_LENGTH = 6000


@contextmanager
def run(
    experiment: str,
    name: str,
    tags: dict[str, str] | None = None,
    parent_id: str | None = None,
    reopen: str | None = None,
) -> Iterator[str]:
    """Open a run (a child of `parent_id` if given), or `reopen` an existing one; yield its id; always close it.

    The run ends FINISHED on success, FAILED on an error (an Exception), and KILLED on an
    interruption: any other BaseException (Ctrl-C, SystemExit, Prefect's TerminationSignal).
    """
    all_tags = dict(tags or {})
    if parent_id:
        all_tags[PARENT_TAG] = parent_id
    mlflow = client()
    if reopen is None:
        all_tags[heartbeat.HEARTBEAT_TAG] = heartbeat.fresh()  # from its first moment: a crash is seen
        run_id = mlflow.create_run(experiment_id(experiment), run_name=name, tags=all_tags).info.run_id
        heartbeat.start(run_id)
    else:
        run_id = reopen
        found = mlflow.get_run(run_id)
        mlflow.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        if heartbeat.CRASHED_TAG in found.data.tags:
            mlflow.delete_tag(run_id, heartbeat.CRASHED_TAG)
        resumed = int(found.data.tags.get(RESUMED_TAG, "0")) + 1
        mlflow.log_batch(
            run_id, tags=[RunTag(RESUMED_TAG, str(resumed)), RunTag(heartbeat.HEARTBEAT_TAG, heartbeat.fresh())]
        )
        heartbeat.start(run_id)
    status = RunStatus.FAILED
    try:
        yield run_id
        status = RunStatus.FINISHED
    except Exception:
        raise
    except BaseException:  # Ctrl-C, SystemExit, Prefect's TerminationSignal on SIGTERM: an interruption
        status = RunStatus.KILLED
        raise
    finally:
        heartbeat.stop(run_id)
        away = unreachable() if status != RunStatus.FINISHED else None
        if away is None:
            mlflow.set_terminated(run_id, status=RunStatus.to_string(status))
        else:  # closing it would wait minutes for MLflow's retries; its stopped heartbeat closes it later
            log.warning("run %s left open: %s", run_id, away)


def get_run(run_id: str) -> Run:
    """A run's info, params, metrics and tags; raises LookupError naming the id if there is no such run."""
    try:
        return client().get_run(run_id)
    except MlflowException as err:
        raise LookupError(f"there is no MLflow run {run_id!r} in {mask_secrets(tracking_uri())}") from err


def child_runs(run_id: str) -> list[Run]:
    """The runs whose parent is `run_id`, oldest first."""
    mlflow = client()
    parent = mlflow.get_run(run_id)
    found = mlflow.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return list(found)


def set_tags(run_id: str, tags: dict[str, Any]) -> None:
    """Tag a run."""
    client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_config(run_id: str, config: BaseModel) -> None:
    """The validated config: every field as a param, and the whole as config.json (secrets masked)."""
    dumped = mask_secrets(config.model_dump(mode="json"))
    params = [Param(k, _param_value(v)) for k, v in _flatten(dumped).items()]
    mlflow = client()
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        mlflow.log_batch(run_id, params=params[start : start + 100])
    log_dict(run_id, dumped, "config.json")


def log_params(run_id: str, params: dict[str, Any]) -> None:
    """Extra params, such as data provenance."""
    flat = _flatten(mask_secrets(params))
    client().log_batch(run_id, params=[Param(k, _param_value(v)) for k, v in flat.items()])


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """One batch of metrics at one step."""
    now = int(time.time() * 1000)
    client().log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def last_metric_steps(run_id: str) -> dict[str, int]:
    """The highest step stored for each metric of a run."""
    mlflow = client()
    keys = mlflow.get_run(run_id).data.metrics
    return {key: max(m.step for m in mlflow.get_metric_history(run_id, key)) for key in keys}


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a metric, in step order."""
    return sorted((m.step, m.value) for m in client().get_metric_history(run_id, key))


class RunRow(NamedTuple):
    run_id: str
    name: str
    status: str
    start_time: int  # ms since the epoch
    parent: str | None
    metrics: dict[str, float]
    crashed: str | None = None  # why rlgen closed it as crashed (the `rlgen.crashed` tag)


def recent_runs(limit: int = 20) -> list[RunRow]:
    """The newest runs of every experiment, with their status and final metrics."""
    mlflow = client()
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    if not experiments:
        return []
    runs = mlflow.search_runs(experiments, filter_string="", max_results=limit, order_by=["attributes.start_time DESC"])
    return [
        RunRow(
            r.info.run_id,
            r.info.run_name or "",
            r.info.status,
            r.info.start_time,
            r.data.tags.get(PARENT_TAG),
            dict(r.data.metrics),
            r.data.tags.get(heartbeat.CRASHED_TAG),
        )
        for r in runs
    ]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]
