"""The pipeline, rlgen's main job: shared data prep -> every selected model's flow (concurrent branches:
train, evaluate, export, register, promote) -> report."""

from __future__ import annotations

from prefect import flow
from prefect.futures import PrefectFuture

from rlgen.checkpoints.stop import current_stop
from rlgen.family import ModelResult
from rlgen.pipeline import cluster
from rlgen.pipeline.branches import check_branches, run_all, shared_threads
from rlgen.pipeline.config import PipelineConfig
from rlgen.tracking.lifecycle import tracked_run
from tasks.pipeline import branch_task, prepare_task, report_task


@flow(name="pipeline", log_prints=True)
def pipeline_flow(config: PipelineConfig = PipelineConfig()) -> dict[str, object]:
    """Train, evaluate, export, register and promote every selected model, then write the report."""
    cluster.check_runner(config)
    with shared_threads(config) as threads, tracked_run(config, f"pipeline-{config.profile}") as parent_id:
        prepare_task(config, parent_id)
        with cluster.task_runner(config, threads) as runner:

            def submit(name: str) -> PrefectFuture[ModelResult]:
                return runner.submit(branch_task, {"cfg": config, "name": name, "parent_id": parent_id})

            results = run_all(config, submit, current_stop())
        text = report_task(config, results, parent_id)
        check_branches(results)
    print(text)
    models = {r.name: r.result.model for r in results if r.result is not None}
    return {"run_id": parent_id, "torch_threads": threads, "models": models}
