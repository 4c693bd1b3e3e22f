"""The descriptor, generator and coop flows: data prep -> data report -> evaluator -> train -> evaluate ->
export -> register, the same recipe as the VAE and GAN flows."""

from __future__ import annotations

from prefect import flow

from rlgen.config import CoopConfig, DescriptorConfig, GeneratorConfig
from tasks import images, langevin
from tasks.runs import tracked_run


def langevin_recipe(config: langevin.LangevinConfig) -> dict[str, float]:
    """The steps every Langevin-driven flow runs, as tasks under one parent MLflow run."""
    prepared = images.prepare_data_task(config)
    with tracked_run(config, config.registered_name) as parent_id:
        images.report_data_task(prepared, parent_id)
        evaluator = images.evaluator_task(config, prepared, parent_id)
        with tracked_run(config, config.registered_name, parent_id, role="train") as run_id:
            trained = langevin.train_task(config, prepared, run_id)
            metrics = langevin.evaluate_task(config, prepared, trained, evaluator)
            model_dir = langevin.export_task(config, trained)
            version = images.register_task(config, run_id, model_dir, metrics)
        images.summarize_task(parent_id, trained, metrics, version)
    return {**metrics, "perf/images_per_sec": trained.images_per_sec, "train/seconds": trained.seconds, "model_version": float(version.version)}


@flow(name="descriptor", log_prints=True)
def descriptor_flow(config: DescriptorConfig = DescriptorConfig()) -> dict[str, float]:
    """Train the energy-based descriptor net by Langevin synthesis; export its energy as a scoring module."""
    return langevin_recipe(config)


@flow(name="generator", log_prints=True)
def generator_flow(config: GeneratorConfig = GeneratorConfig()) -> dict[str, float]:
    """Train the generator net by alternating back-propagation; export and register the generator."""
    return langevin_recipe(config)


@flow(name="coop", log_prints=True)
def coop_flow(config: CoopConfig = CoopConfig()) -> dict[str, float]:
    """Train descriptor and generator cooperatively (CoopNets); export and register the generator."""
    return langevin_recipe(config)
