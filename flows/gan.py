"""The gan flow: data prep -> data report -> evaluator -> train -> evaluate -> export -> register."""

from __future__ import annotations

from prefect import flow

from rlgen.config import GANConfig
from tasks import gan, images, promotion
from tasks.runs import tracked_run, with_retries


@flow(name="gan", log_prints=True)
def gan_flow(config: GANConfig = GANConfig(), parent_run_id: str | None = None, resume_run_id: str | None = None) -> dict[str, float | str]:
    """Train a GAN variant on MNIST-like images, evaluate it, export it to TorchScript and register it."""
    prepared = images.prepare_data_task(config)
    with tracked_run(config, config.registered_name, parent_run_id, resume=resume_run_id) as parent_id:
        images.report_data_task(prepared, parent_id)
        evaluator = images.evaluator_task(config, prepared, parent_id)
        with tracked_run(config, config.registered_name, parent_id, role="train", resume=resume_run_id) as run_id:
            trained = with_retries(gan.train_task, config)(config, prepared, run_id)
            metrics = gan.evaluate_task(config, prepared, trained, evaluator)
            model_dir = gan.export_task(config, trained)
            version = images.register_task(config, run_id, model_dir, metrics)
            decision = promotion.promote_task(version, config.family, metrics, images.evaluation_key(config, prepared))
        images.summarize_task(parent_id, trained, metrics, version)
    return images.flow_result(trained, metrics, version, decision)
