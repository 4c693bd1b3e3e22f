"""The lm flow: corpus prep -> data report -> train -> evaluate -> export -> register, as the other flows."""

from __future__ import annotations

from prefect import flow

from rlgen.config import LMConfig
from tasks import lm
from tasks.runs import tracked_run


@flow(name="lm", log_prints=True)
def lm_flow(config: LMConfig = LMConfig()) -> dict[str, float]:  # noqa: B008 (frozen; Prefect shows the default)
    """Train a character- or word-level recurrent language model, evaluate it, export it to TorchScript and register it."""
    prepared = lm.prepare_data_task(config)
    with tracked_run(config, config.registered_name) as parent_id:
        lm.report_data_task(prepared, parent_id)
        with tracked_run(config, config.registered_name, parent_id, role="train") as run_id:
            trained = lm.train_task(config, prepared, run_id)
            metrics = lm.evaluate_task(config, prepared, trained)
            model_dir = lm.export_task(config, prepared, trained)
            version = lm.register_task(config, run_id, model_dir, metrics)
        lm.summarize_task(parent_id, trained, metrics, version)
    return {**metrics, "perf/tokens_per_sec": trained.tokens_per_sec, "train/seconds": trained.seconds, "model_version": float(version.version)}
