"""The training task's body, the same for every family: build, train under the driver, keep the weights.

And its inverse, `load_trained`: the trained modules rebuilt from the weights in the tracking store, for
evaluation and export.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from models.common import compile_modules, seed_everything
from rlgen.checkpoints.io import load_checkpoint, save_checkpoint
from rlgen.checkpoints.stop import StopRequest, current_stop
from rlgen.config.base import TrainConfig
from rlgen.family import Loaded, Trained
from rlgen.plots import learning_curve
from rlgen.registry import family_of
from rlgen.tracking.artifacts import download, log_artifact, temp_dir
from rlgen.tracking.runs import log_metrics, log_params
from rlgen.training.device import training_device
from rlgen.training.driver import drive

log = logging.getLogger(__name__)


def train_model(cfg: TrainConfig, prepared: object, run_id: str, stop: StopRequest | None = None) -> Trained:
    """Train `cfg`'s model on `prepared` data under the driver, recording everything on MLflow run `run_id`.

    A run with a resumable checkpoint goes on from it. The final weights go to `checkpoints/<family>.pt` in the
    run, with the learning curve and the train/* and perf/* summary.
    """
    family = family_of(cfg)
    impl = family.impl()
    seed_everything(cfg.seed)
    device = training_device(cfg)
    modules = {name: module.to(device) for name, module in impl.build(cfg, prepared).items()}
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
    log.info("%s: %s, %s parameters, device %s", cfg.registered_name, cfg.model_dump(), sum(counts.values()), device)
    per_module = {f"model.{name}_parameters": n for name, n in counts.items()} if len(counts) > 1 else {}
    log_params(run_id, {"model.parameters": sum(counts.values()), **per_module, "device.resolved": str(device)})
    trainer = impl.trainer(cfg, prepared, modules, device)
    if cfg.compile:
        compile_modules(*modules.values())
    result = drive(
        trainer, run_id, checkpoint_every=cfg.checkpoint_every, stop=stop or current_stop(),
        nan_rollback=cfg.nan_rollback, device=device, amp=cfg.amp,
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
        curve = learning_curve(impl.curves(result.history), Path(tmp) / "learning_curve.png", title, xlabel=trainer.unit)
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
