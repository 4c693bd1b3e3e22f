"""Pipeline tasks: shared data prep, one branch per model (the model's own flow, as a subflow), the report.

Branches pass each other nothing but small records (names, run ids, metrics): every tensor stays inside
the branch that made it, and every file goes to the tracking store.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, NamedTuple

import torch
from prefect import task
from prefect.futures import PrefectFuture

from rlgen.config.pipeline import BRANCHES, IMAGE_FAMILIES, PipelineConfig
from rlgen.registry import model_spec
from tasks import cluster, images
from tasks.checkpoint import stop_requested

log = logging.getLogger(__name__)


class BranchResult(NamedTuple):
    name: str
    family: str
    ok: bool
    seconds: float
    result: dict[str, Any]  # the model flow's return value, as a dict
    error: str | None


def share_threads(cfg: PipelineConfig) -> int:
    """Give each concurrent branch its share of the CPU's cores for torch's intra-op pool; returns it."""
    running = min(cfg.concurrency, len(cfg.models))
    threads = max(1, (os.cpu_count() or 1) // running)
    torch.set_num_threads(threads)  # process-wide: two branches on two cores get one thread each, not two
    return threads


def prepare_shared(cfg: PipelineConfig, parent_id: str) -> list[str]:
    """Prepare the image data and train (or find) the LeNet evaluator once, before branches race for them."""
    image_branches = [m for m in cfg.models if BRANCHES[m].family in IMAGE_FAMILIES]
    if not image_branches:
        return []
    image_cfg = cfg.branch_config(image_branches[0])
    prepared = images.prepare_data(image_cfg)
    images.ensure_evaluator(image_cfg, prepared, parent_id)
    return [prepared.content_hash]


def run_branch(cfg: PipelineConfig, name: str, parent_id: str) -> dict[str, Any]:
    """Run one pipeline model: its own flow with its branch config, nested under the pipeline's MLflow run,
    holding its GPU's concurrency slot when it trains on CUDA (`cuda`/`auto` become the GPU it got)."""
    config = cfg.branch_config(name)
    with cluster.gpu_slot(config.device, turn=cfg.models.index(name)) as device:
        config = config.model_copy(update={"device": device})
        result = model_spec(BRANCHES[name].family).load_flow()(config, parent_run_id=parent_id)
    return result._asdict() if hasattr(result, "_asdict") else dict(result)


@task(name="pipeline-prepare", retries=1, retry_delay_seconds=5)
def prepare_task(cfg: PipelineConfig, parent_id: str) -> list[str]:
    return prepare_shared(cfg, parent_id)


@task(name="pipeline-branch", task_run_name="branch-{name}")
def branch_task(cfg: PipelineConfig, name: str, parent_id: str) -> dict[str, Any]:
    return run_branch(cfg, name, parent_id)


def run_branches(cfg: PipelineConfig, parent_id: str, threads: int, poll: float = 0.5) -> list[BranchResult]:
    """Submit the branches as Prefect futures to the config's runner (threads, Dask or Ray; a local cluster's
    workers get `threads` torch threads each), at most `concurrency` at a time; a failed branch is recorded,
    not raised, so that the others finish and the report shows it."""
    pending, running, results = list(cfg.models), {}, {}
    started: dict[str, float] = {}
    with cluster.task_runner(cfg, threads) as runner:
        while running or (pending and not stop_requested()):
            while pending and len(running) < cfg.concurrency and not stop_requested():
                name = pending.pop(0)
                started[name] = time.perf_counter()
                running[name] = runner.submit(branch_task, {"cfg": cfg, "name": name, "parent_id": parent_id})
            time.sleep(poll)
            for name, future in list(running.items()):
                if future.state.is_final():
                    results[name] = finish(name, future, time.perf_counter() - started.pop(name))
                    del running[name]
    for name in pending:  # not started: the user stopped the pipeline (Ctrl-C, SIGTERM)
        results[name] = BranchResult(name, BRANCHES[name].family, False, 0.0, {}, "not started: the pipeline was stopped")
    return [results[name] for name in cfg.models]


def finish(name: str, future: PrefectFuture, seconds: float) -> BranchResult:
    """The record of a finished branch; a failure keeps its error message."""
    outcome = future.result(raise_on_failure=False)
    family = BRANCHES[name].family
    if isinstance(outcome, BaseException):
        log.error("pipeline branch %s failed: %s", name, outcome)
        return BranchResult(name, family, False, seconds, {}, f"{outcome.__class__.__name__}: {outcome}")
    return BranchResult(name, family, True, seconds, outcome, None)


def check_branches(results: list[BranchResult]) -> None:
    """Fail the pipeline (after its report) if any branch failed, naming each."""
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(results)} pipeline models failed: " + "; ".join(f"{r.name}: {r.error}" for r in failed))
