"""The descriptor, generator and coop flows: data prep -> data report -> evaluator -> train -> evaluate ->
export -> register, the same recipe as the VAE and GAN flows."""

from __future__ import annotations

from prefect import flow

from rlgen.config import CoopConfig, DescriptorConfig, GeneratorConfig
from tasks import images, langevin, promotion
from tasks.runs import tracked_run, with_retries


def langevin_recipe(config: langevin.LangevinConfig, parent_run_id: str | None, resume_run_id: str | None) -> dict[str, float | str]:
    """The steps every Langevin-driven flow runs, as tasks under one parent MLflow run."""
    prepared = images.prepare_data_task(config)
    with tracked_run(config, config.registered_name, parent_run_id, resume=resume_run_id) as parent_id:
        images.report_data_task(prepared, parent_id)
        evaluator = images.evaluator_task(config, prepared, parent_id)
        with tracked_run(config, config.registered_name, parent_id, role="train", resume=resume_run_id) as run_id:
            trained = with_retries(langevin.train_task, config)(config, prepared, run_id)
            metrics = langevin.evaluate_task(config, prepared, trained, evaluator)
            model_dir = langevin.export_task(config, trained)
            version = images.register_task(config, run_id, model_dir, metrics)
            decision = promotion.promote_task(version, config.family, metrics, images.evaluation_key(config, prepared))
        images.summarize_task(parent_id, trained, metrics, version)
    return images.flow_result(trained, metrics, version, decision)


@flow(name="descriptor", log_prints=True)
def descriptor_flow(config: DescriptorConfig = DescriptorConfig(), parent_run_id: str | None = None, resume_run_id: str | None = None) -> dict[str, float | str]:
    """Train the energy-based descriptor net by Langevin synthesis; export its energy as a scoring module."""
    return langevin_recipe(config, parent_run_id, resume_run_id)


@flow(name="generator", log_prints=True)
def generator_flow(config: GeneratorConfig = GeneratorConfig(), parent_run_id: str | None = None, resume_run_id: str | None = None) -> dict[str, float | str]:
    """Train the generator net by alternating back-propagation; export and register the generator."""
    return langevin_recipe(config, parent_run_id, resume_run_id)


@flow(name="coop", log_prints=True)
def coop_flow(config: CoopConfig = CoopConfig(), parent_run_id: str | None = None, resume_run_id: str | None = None) -> dict[str, float | str]:
    """Train descriptor and generator cooperatively (CoopNets); export and register the generator."""
    return langevin_recipe(config, parent_run_id, resume_run_id)
