"""The MLflow runs of a flow: one parent per flow run, one child per trained model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import torch
from prefect.runtime import flow_run, task_run

from models.common import device_available, resolve_device
from rlgen.config import ConfigError, RunConfig
from tasks import tracking


def training_device(cfg: RunConfig) -> torch.device:
    """The device a config asks for; raises ConfigError if this machine does not have it."""
    device = resolve_device(cfg.device)
    if not device_available(device):
        raise ConfigError(f"device={cfg.device!r} is not available on this machine; use --set device=cpu or auto.")
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


@contextmanager
def tracked_run(cfg: RunConfig, subject: str, parent_id: str | None = None, role: str = "flow") -> Iterator[str]:
    """Open an MLflow run for `cfg` with its params, config.json and Prefect tags; yield its id."""
    tags = {"rlgen.family": getattr(cfg, "family", ""), "rlgen.role": role, **prefect_tags()}
    name = run_name(cfg, subject if role == "flow" else f"{subject}-{role}")
    with tracking.run(cfg.experiment, name, tags=tags, parent_id=parent_id) as run_id:
        tracking.log_config(run_id, cfg)
        yield run_id
