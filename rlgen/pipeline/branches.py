"""The pipeline's branches: shared data prep, one model flow per branch as a Prefect future, their results.

Branches pass each other nothing but small records (names, run ids, metrics): every tensor stays inside
the branch that made it, and every file goes to the tracking store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

import torch
from prefect.futures import PrefectFuture

from rlgen.checkpoints.stop import StopRequest
from rlgen.family import ModelResult
from rlgen.pipeline import cluster
from rlgen.pipeline.config import PipelineConfig
from rlgen.registry import branches

log = logging.getLogger(__name__)


class BranchResult(NamedTuple):
    name: str
    family: str
    ok: bool
    seconds: float
    result: ModelResult | None  # the model flow's result
    error: str | None


@contextmanager
def shared_threads(cfg: PipelineConfig) -> Iterator[int]:
    """Give each concurrent branch its share of the CPU's cores for torch's intra-op pool while the block runs."""
    running = min(cfg.concurrency, len(cfg.models))
    threads, before = max(1, (os.cpu_count() or 1) // running), torch.get_num_threads()
    torch.set_num_threads(threads)  # process-wide: two branches on two cores get one thread each, not two
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def prepare_shared(cfg: PipelineConfig, parent_id: str) -> list[str]:
    """Prepare each data domain once, with what its evaluation needs (the LeNet evaluator), before branches race
    for them; returns the families whose data was prepared."""
    firsts: dict[int, str] = {}
    for name in cfg.models:
        family = branches()[name][0]
        firsts.setdefault(id(family.impl().DOMAIN), name)
    prepared = []
    for name in firsts.values():
        family, config = branches()[name][0], cfg.branch_config(name)
        domain = family.impl().DOMAIN
        domain.context(config, domain.prepare(config), parent_id)
        prepared.append(family.name)
    return prepared


def run_branch(cfg: PipelineConfig, name: str, parent_id: str) -> ModelResult:
    """Run one pipeline model: its own flow with its branch config, nested under the pipeline's MLflow run,
    holding its GPU's concurrency slot when it trains on CUDA (`cuda`/`auto` become the GPU it got)."""
    family, config = branches()[name][0], cfg.branch_config(name)
    with cluster.gpu_slot(config.device, turn=cfg.models.index(name)) as device:
        result = family.load_flow()(config.model_copy(update={"device": device}), parent_run_id=parent_id)
    return cast(ModelResult, result)


Submit = Callable[[str], PrefectFuture[Any]]  # branch name -> the future of its branch task


def run_all(cfg: PipelineConfig, submit: Submit, stop: StopRequest, poll: float = 0.5) -> list[BranchResult]:
    """Submit the branches (at most `concurrency` at a time) and collect them; a failed branch is recorded, not
    raised, so that the others finish and the report shows it. After a stop request no new branch starts."""
    pending, results = list(cfg.models), {}
    running: dict[str, PrefectFuture[Any]] = {}
    started: dict[str, float] = {}
    while running or (pending and not stop.is_set()):
        while pending and len(running) < cfg.concurrency and not stop.is_set():
            name = pending.pop(0)
            started[name] = time.perf_counter()
            running[name] = submit(name)
        time.sleep(poll)
        for name, future in list(running.items()):
            if future.state.is_final():
                results[name] = finish(name, future, time.perf_counter() - started.pop(name))
                del running[name]
    for name in pending:  # not started: the user stopped the pipeline (Ctrl-C, SIGTERM)
        results[name] = BranchResult(
            name, branches()[name][0].name, False, 0.0, None, "not started: the pipeline was stopped"
        )
    return [results[name] for name in cfg.models]


def finish(name: str, future: PrefectFuture[Any], seconds: float) -> BranchResult:
    """The record of a finished branch; a failure keeps its error message."""
    outcome = future.result(raise_on_failure=False)
    family = branches()[name][0].name
    if isinstance(outcome, BaseException):
        log.error("pipeline branch %s failed: %s", name, outcome)
        return BranchResult(name, family, False, seconds, None, f"{outcome.__class__.__name__}: {outcome}")
    return BranchResult(name, family, True, seconds, outcome, None)


def check_branches(results: list[BranchResult]) -> None:
    """Fail the pipeline (after its report) if any branch failed, naming each."""
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(results)} pipeline models failed: "
            + "; ".join(f"{r.name}: {r.error}" for r in failed)
        )
