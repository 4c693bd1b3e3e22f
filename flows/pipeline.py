"""The pipeline, rlgen's main job: shared data prep -> every selected model's flow (concurrent branches:
train, evaluate, export, register, promote) -> report."""

from __future__ import annotations

from prefect import flow

from rlgen.config.pipeline import PipelineConfig
from tasks import cluster, pipeline, report
from tasks.runs import tracked_run


@flow(name="pipeline", log_prints=True)
def pipeline_flow(config: PipelineConfig = PipelineConfig()) -> dict[str, object]:
    """Train, evaluate, export, register and promote every selected model, then write the report."""
    cluster.check_runner(config)
    threads = pipeline.share_threads(config)
    with tracked_run(config, f"pipeline-{config.profile}") as parent_id:
        pipeline.prepare_task(config, parent_id)
        results = pipeline.run_branches(config, parent_id, threads)
        text = report.report_task(config, results, parent_id)
        pipeline.check_branches(results)
    print(text)
    return {"run_id": parent_id, "torch_threads": threads, "models": {r.name: r.result.get("model") or r.result.get("model_name") for r in results}}
