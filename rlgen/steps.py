"""The steps of every model flow, as plain functions over the family record: tasks/ wraps each in a Prefect task.

prepare -> report the data -> evaluation context -> train -> evaluate -> export -> register -> promote ->
summarize. Each takes the family's config; the family is found from it. `load_trained` is training's inverse:
the trained modules rebuilt from the weights in the tracking store, for evaluation and export.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from models.common import compile_modules, seed_everything
from models.training import Trainer
from rlgen.checkpoints.io import load_checkpoint, save_checkpoint
from rlgen.checkpoints.stop import StopRequest, current_stop
from rlgen.config.base import TrainConfig
from rlgen.export.checked import export_checked
from rlgen.family import Loaded, ModelResult, Trained
from rlgen.plots import learning_curve
from rlgen.registry import family_of
from rlgen.serving.mlflow_model import log_model
from rlgen.tracking.artifacts import download, log_artifact, log_dict, temp_dir
from rlgen.tracking.promotion import Decision, evaluation_key, promote
from rlgen.tracking.registry import ModelVersion, register_model
from rlgen.tracking.runs import log_metrics, log_params, set_tags
from rlgen.tracking.secrets import mask_secrets
from rlgen.training.device import training_device
from rlgen.training.driver import drive

log = logging.getLogger(__name__)


def prepare(cfg: TrainConfig) -> Any:
    """The family's data, read (or downloaded), verified and cached; the device is checked first."""
    training_device(cfg)
    return family_of(cfg).impl().DOMAIN.prepare(cfg)


def report_data(cfg: TrainConfig, prepared: Any, run_id: str) -> None:
    """The data's provenance (and data report) on the flow's run."""
    family_of(cfg).impl().DOMAIN.report(cfg, prepared, run_id)


def context(cfg: TrainConfig, prepared: Any, parent_id: str) -> Any:
    """What evaluation needs besides the model (the image models' LeNet evaluator), or None."""
    return family_of(cfg).impl().DOMAIN.context(cfg, prepared, parent_id)


def build_trainer(cfg: TrainConfig, prepared: object, context: Any = None) -> tuple[Trainer, torch.device]:
    """`cfg`'s trainer on `prepared` data, as every training run builds it: seeded, the family's networks on the
    config's device, its trainer over them, compiled when the config says so (benchmarks step it the same way).
    `context` is the domain's evaluation context (`context()`): with it image trainers score their validation
    curve and keep the best epoch; without it (None) they keep the last."""
    impl = family_of(cfg).impl()
    seed_everything(cfg.seed)
    device = training_device(cfg)
    modules = {name: module.to(device) for name, module in impl.build(cfg, prepared).items()}
    trainer = impl.trainer(cfg, prepared, modules, device, context)
    if cfg.compile:
        compile_modules(*modules.values())
    return trainer, device


def train_model(
    cfg: TrainConfig, prepared: object, run_id: str, stop: StopRequest | None = None, context: Any = None
) -> Trained:
    """Train `cfg`'s model on `prepared` data under the driver, recording everything on MLflow run `run_id`;
    `context` as in `build_trainer` (the flow passes the evaluation context).

    A run with a resumable checkpoint goes on from it. The final weights go to `checkpoints/<family>.pt` in the
    run, with the learning curve and the train/* and perf/* summary.
    """
    family = family_of(cfg)
    trainer, device = build_trainer(cfg, prepared, context)
    modules = trainer.modules()
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
    config = mask_secrets(cfg.model_dump())
    log.info("%s: %s, %s parameters, device %s", cfg.registered_name, config, sum(counts.values()), device)
    per_module = {f"model.{name}_parameters": n for name, n in counts.items()} if len(counts) > 1 else {}
    log_params(run_id, {"model.parameters": sum(counts.values()), **per_module, "device.resolved": str(device)})
    result = drive(
        trainer,
        run_id,
        checkpoint_every=cfg.checkpoint_every,
        stop=stop or current_stop(),
        nan_rollback=cfg.nan_rollback,
        device=device,
        amp=cfg.amp,
    )
    summary = trainer.summary(result.seconds, result.first_step)
    log_metrics(run_id, summary, step=trainer.steps)
    artifact = f"checkpoints/{family.name}.pt"
    with temp_dir() as tmp:
        weights = {
            "config": cfg.model_dump(mode="json"),
            "step": trainer.steps,
            "modules": {name: module.state_dict() for name, module in modules.items()},
            "buffers": {name: buffer.detach().cpu() for name, buffer in trainer.buffers().items()},
        }
        log_artifact(run_id, save_checkpoint(Path(tmp) / f"{family.name}.pt", weights), "checkpoints")
        title = f"{cfg.registered_name}, seed {cfg.seed}"
        curve = learning_curve(
            family.impl().curves(result.history), Path(tmp) / "learning_curve.png", title, xlabel=trainer.unit
        )
        log_artifact(run_id, curve, "plots")
    return Trained(run_id, artifact, trainer.steps, result.seconds, summary)


def load_trained(cfg: TrainConfig, prepared: object, trained: Trained, device: torch.device) -> Loaded:
    """The trained modules from their weights in the tracking store, in eval mode on `device`."""
    with temp_dir() as tmp:
        state = load_checkpoint(download(trained.run_id, trained.checkpoint, Path(tmp)), device)
    modules = family_of(cfg).impl().build(cfg, prepared)
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
        module.to(device).eval()
    return Loaded(modules, dict(state["buffers"]), int(state["step"]))


def evaluate(cfg: TrainConfig, prepared: Any, trained: Trained, evaluation_context: Any) -> dict[str, float]:
    """The family's evaluation of the trained model, logged on its run and as evaluation/report.json."""
    seed_everything(cfg.seed)
    loaded = load_trained(cfg, prepared, trained, training_device(cfg))
    metrics = family_of(cfg).impl().evaluate(cfg, prepared, loaded, evaluation_context, trained.run_id)
    log_metrics(trained.run_id, metrics, step=trained.steps)
    log_dict(trained.run_id, metrics, "evaluation/report.json")
    return metrics


def export(cfg: TrainConfig, prepared: Any, trained: Trained) -> str:
    """TorchScript and .pt2 of the family's export module, parity-checked in a fresh process, logged as the training
    run's MLflow model (its pyfunc interface, signature and input example); the model's URI, models:/<id>."""
    family = family_of(cfg)
    spec = family.impl().export(cfg, prepared, load_trained(cfg, prepared, trained, torch.device("cpu")))
    metadata = {
        "family": family.name,
        "interface": family.consumer,
        "registered_name": cfg.registered_name,
        "config": cfg.model_dump(mode="json"),
    }
    with temp_dir() as tmp:
        exported = export_checked(spec, Path(tmp), cfg.registered_name, metadata)
        log_metrics(trained.run_id, exported.metrics, step=trained.steps)
        set_tags(trained.run_id, exported.tags)
        described = {**metadata, **spec.metadata}
        model = log_model(
            trained.run_id, family.consumer, exported.files, described, trained.steps, cfg.registered_name
        )
    return model.uri


def register(cfg: TrainConfig, run_id: str, model_uri: str, metrics: dict[str, float]) -> ModelVersion:
    """A new version of `cfg.registered_name` from the run's MLflow model, tagged with its family, keys and metrics."""
    family = family_of(cfg)
    tags = {"family": family.name, **{key: str(getattr(cfg, key)) for key in family.tags}}
    tags |= {key: f"{metrics[key]:.4g}" for key in family.metric_keys() if key in metrics}
    return register_model(run_id, model_uri, cfg.registered_name, tags=tags)


def evaluation(cfg: TrainConfig, prepared: Any) -> str:
    """What the evaluation depends on (the data, then the config keys the family names): versions compare only
    when this matches."""
    family = family_of(cfg)
    settings = [f"{key}={getattr(cfg, key)}" for key in family.evaluation]
    return evaluation_key(*family.impl().DOMAIN.evaluation_parts(cfg, prepared), *settings)


def promote_version(cfg: TrainConfig, version: ModelVersion, metrics: dict[str, float], prepared: Any) -> Decision:
    """Champion if it beats the champion on the same evaluation, else challenger."""
    return promote(version, family_of(cfg).primary, metrics, evaluation(cfg, prepared))


def summarize(
    cfg: TrainConfig,
    parent_id: str,
    trained: Trained,
    metrics: dict[str, float],
    version: ModelVersion,
    decision: Decision,
) -> ModelResult:
    """The headline figures on the flow's parent run (where `rlgen runs` reads them), and the flow's result."""
    figures = {**metrics, **trained.metrics}
    log_metrics(parent_id, figures, step=trained.steps)
    model = f"{version.name}/{version.version}"
    set_tags(parent_id, {"rlgen.model": model, "rlgen.train_run_id": trained.run_id})
    return ModelResult(family_of(cfg).name, model, decision.alias, parent_id, trained.run_id, figures)
