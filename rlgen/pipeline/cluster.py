"""Where the pipeline's branches run, and which GPU each one trains on.

The branches run on a Prefect task runner: threads of this process (`runner=thread`, the default), or the
worker processes of a Dask or Ray cluster (`runner=dask|ray`, through prefect-dask and prefect-ray, the
`cluster` extra, imported only then). A local cluster gets `concurrency` one-thread worker processes that
inherit this process's environment, plus what they cannot find by themselves: the URL of this run's Prefect
API (the embedded server's too), the rlgen home and their share of the cores for torch.

A branch that trains on CUDA holds the Prefect global concurrency limit of its GPU (`gpu-0`, `gpu-1`, ...;
limit 1, created when missing) while it runs, so each GPU trains one branch at a time, whichever thread,
process or pipeline runs it. On the CPU nothing is held and Prefect's API is not called.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from models.common import device_available, resolve_device
from rlgen.errors import ConfigError
from rlgen.pipeline.config import PipelineConfig
from rlgen.settings import project_root
from rlgen.tracking.store import is_embedded

log = logging.getLogger(__name__)


def check_runner(cfg: PipelineConfig) -> None:
    """Refuse, before any work, an existing cluster whose workers could not reach this run's Prefect API or store."""
    if not cfg.runner_address:
        return
    from prefect.settings import PREFECT_API_URL

    missing = []
    if not PREFECT_API_URL.value():
        missing.append(
            "a Prefect server (PREFECT_API_URL): this run uses Prefect's embedded server, which lives in this process"
        )
    if is_embedded():
        missing.append(
            "an MLflow server (MLFLOW_TRACKING_URI): this run uses the embedded SQLite store of this machine"
        )
    if missing:
        raise ConfigError(
            f"runner_address={cfg.runner_address!r} sends the branches to workers that need "
            + " and ".join(missing)
            + ". Point both at servers the workers reach, set the same variables on the workers, "
            "or leave runner_address unset for a local cluster."
        )


def task_runner(cfg: PipelineConfig, threads: int) -> TaskRunner:
    """The Prefect task runner of the branches: a thread pool, or a Dask or Ray cluster (local unless
    runner_address)."""
    if cfg.runner == "thread":
        return ThreadPoolTaskRunner(max_workers=cfg.concurrency)
    if cfg.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.runner_address:
            return DaskTaskRunner(address=cfg.runner_address)
        workers = {"n_workers": cfg.concurrency, "threads_per_worker": 1, "processes": True, "env": worker_env(threads)}
        return DaskTaskRunner(
            cluster_kwargs={**workers, "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
        )  # a free port
    from prefect_ray import RayTaskRunner

    if cfg.runner_address:
        return RayTaskRunner(address=cfg.runner_address)
    # Each Ray task takes one CPU: `concurrency` CPUs run `concurrency` branches at once.
    local = {"num_cpus": cfg.concurrency, "include_dashboard": False}
    return RayTaskRunner(init_kwargs={**local, "runtime_env": {"env_vars": worker_env(threads)}})


def worker_env(threads: int) -> dict[str, str]:
    """What a local cluster's workers need besides the environment they inherit: this run's Prefect API,
    the rlgen home (a Ray worker may start elsewhere) and their torch threads."""
    return {"PREFECT_API_URL": prefect_api_url(), "RLGEN_HOME": str(project_root()), "OMP_NUM_THREADS": str(threads)}


def prefect_api_url() -> str:
    """The URL of the Prefect API this flow run talks to; with the embedded server, its temporary localhost URL.

    Workers that are not told start an embedded server of their own, on the same database, one per process.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.client is None:
        raise RuntimeError("prefect_api_url() needs a flow run: call it inside the pipeline flow")
    return str(context.client.api_url)


def gpu_limit_name(index: int) -> str:
    """The Prefect global concurrency limit of GPU `index`."""
    return f"gpu-{index}"


def ensure_gpu_limits(indices: Sequence[int]) -> dict[int, int]:
    """Create the missing GPU limits with one slot each (an existing limit keeps the value its owner gave it);
    return each GPU's free slots now."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    free = {}
    with get_client(sync_client=True) as client:
        for index in indices:
            name = gpu_limit_name(index)
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
                free[index] = limit.limit - limit.active_slots
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                except ObjectAlreadyExists:  # another branch created it meanwhile
                    pass
                free[index] = 1
    return free


@contextmanager
def hold_gpu(indices: Sequence[int], turn: int = 0) -> Iterator[int]:
    """Hold a slot of one of the GPUs `indices` (their Prefect concurrency limits) while the block runs; yield its
    index.

    It waits on the GPU with the most free slots now; ties go round by `turn` (a branch's position), so
    branches that start together spread over the GPUs instead of all reading GPU 0 as free. The slot is a
    lease that Prefect renews while it is held; one whose holder died frees itself after 5 minutes.
    """
    from prefect.concurrency.sync import concurrency

    free = ensure_gpu_limits(indices)
    start = turn % len(indices)
    index = max([*indices[start:], *indices[:start]], key=lambda i: free[i])  # max keeps the first of equals
    # strict: the limit exists (made above); a failed lease renewal (the API briefly away) does not stop training
    with concurrency(gpu_limit_name(index), strict=True, raise_on_lease_renewal_failure=False):
        log.info("holding %s", gpu_limit_name(index))
        yield index


@contextmanager
def gpu_slot(device: str, turn: int = 0) -> Iterator[str]:
    """Hold the GPU `device` resolves to while the block runs and yield the device to train on (`cuda:N`).

    `cuda` or `auto` takes a GPU of this machine (hold_gpu: the freest, ties by `turn`), `cuda:N` waits for
    GPU N. Any other device, or CUDA that this process does not see (the branch then fails with its own
    message), yields `device` unchanged and holds nothing.
    """
    target = resolve_device(device)
    if target.type != "cuda" or not device_available(target):
        yield device
        return
    indices = [target.index] if target.index is not None else list(range(torch.cuda.device_count()))
    with hold_gpu(indices, turn) as index:
        yield f"cuda:{index}"
