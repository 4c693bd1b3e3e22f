"""The pipeline, rlgen's main job: every selected model's flow as a concurrent branch, promotion, and a report."""

from rlgen.family import Command
from rlgen.pipeline.config import PipelineConfig
from rlgen.registry import FAMILIES

PIPELINE = Command(
    name="pipeline",
    config=PipelineConfig,
    summary="The main job: every selected model's flow (concurrent branches), champion promotion, and a report.",
    entrypoint="flows.pipeline.pipeline_flow",
)


def commands() -> dict[str, Command]:
    """What `rlgen run` offers and what is deployed: the pipeline, then every family."""
    return {PIPELINE.name: PIPELINE, **FAMILIES}


__all__ = ["PIPELINE", "PipelineConfig", "commands"]
