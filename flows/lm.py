"""The lm flow: corpus prep -> data report -> train -> evaluate -> export -> register -> promote, as the other flows."""

from __future__ import annotations

from prefect import flow

from rlgen.config import LMConfig
from tasks import lm, promotion
from tasks.runs import tracked_run, with_retries


@flow(name="lm", log_prints=True)
def lm_flow(config: LMConfig = LMConfig(), parent_run_id: str | None = None, resume_run_id: str | None = None) -> dict[str, float | str]:  # noqa: B008 (frozen)
    """Train a character- or word-level recurrent language model, evaluate it, export it to TorchScript and register it."""
    prepared = lm.prepare_data_task(config)
    with tracked_run(config, config.registered_name, parent_run_id, resume=resume_run_id) as parent_id:
        lm.report_data_task(prepared, parent_id)
        with tracked_run(config, config.registered_name, parent_id, role="train", resume=resume_run_id) as run_id:
            trained = with_retries(lm.train_task, config)(config, prepared, run_id)
            metrics = lm.evaluate_task(config, prepared, trained)
            model_dir = lm.export_task(config, prepared, trained)
            version = lm.register_task(config, run_id, model_dir, metrics)
            decision = promotion.promote_task(version, config.family, metrics, lm.evaluation_key(config, prepared))
        lm.summarize_task(parent_id, trained, metrics, version)
    return lm.flow_result(trained, metrics, version, decision)
