"""What trains, evaluates and exports the generator net: alternating back-propagation, FID-LeNet and held-out
reconstruction, the generator (z, y) -> images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models import gan, langevin
from models.image_trainer import ImageTrainer, Selection
from models.training import Grid, Report
from rlgen.data.images import PreparedData, load_prepared
from rlgen.domains import IMAGES as DOMAIN
from rlgen.evaluation.images import (
    EvaluatorRef,
    evaluate_samples,
    generator_inputs,
    image_metadata,
    log_sample_grid,
    selection,
)
from rlgen.export.checked import ExportSpec
from rlgen.families.generator.config import GeneratorConfig
from rlgen.families.langevin import (
    RECON_INFER_STEPS,
    adam,
    build_generator,
    calibrated_samples,
    fixed_noise,
    infer,
)
from rlgen.family import Loaded, Panels, Series
from rlgen.tracking.artifacts import log_image

__all__ = ["DOMAIN", "build", "curves", "evaluate", "export", "trainer"]


def build(cfg: GeneratorConfig, prepared: PreparedData) -> dict[str, nn.Module]:
    return {"generator": build_generator(cfg)}


class GeneratorTrainer(ImageTrainer):
    """Infer each batch's latent vectors by Langevin on p(z | x), keep them, then fit g to the images."""

    shown = ("train/recon_mse",)

    def __init__(
        self,
        cfg: GeneratorConfig,
        data: dict[str, Tensor],
        generator: nn.Module,
        device: torch.device,
        selection: Selection | None = None,
    ) -> None:
        n = data["train_images"].shape[0]
        # the loop hands each step the batch's "labels": here the images' row numbers, to look up their z
        super().__init__(
            data["train_images"],
            torch.arange(n, device=device),
            cfg.batch_size,
            cfg.epochs,
            cfg.max_steps,
            cfg.log_every,
            selection,
        )
        self.name, self.cfg, self.generator, self.device = cfg.registered_name, cfg, generator, device
        self.optimizer = adam(generator, cfg.generator_lr)
        self.latents = torch.randn(n, cfg.latent_dim, device=device)  # one z per training image, for the whole run
        self.fixed_z = fixed_noise(cfg, device)

    def train_batch(self, x: Tensor, rows: Tensor) -> dict[str, Tensor]:
        target = gan.from_unit(x)
        z = infer(self.cfg, self.generator, self.latents[rows], target, self.cfg.infer_steps)
        self.latents[rows] = z
        return langevin.generator_step(self.generator, self.optimizer, z, target, self.cfg.gen_sigma)

    def end_of_epoch(self, epoch: int) -> Report:
        with torch.no_grad():
            grid = gan.to_unit(self.generator(self.fixed_z))  # batch statistics of the prior batch (train mode)
        # the inferred latents against the N(0, I) prior: std near 1 and means near 0 while they keep to it
        drift = {
            "train/latent_std": float(self.latents.std()),
            "train/latent_mean_abs": float(self.latents.mean(0).abs().mean()),
        }
        return Report(metrics=drift, grids={f"samples/epoch_{epoch:03d}.png": Grid(grid, nrow=8)})

    def prior_samples(self, n: int) -> Tensor:
        return calibrated_samples(self.cfg, self.generator, n, self.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def buffers(self) -> dict[str, Tensor]:
        return {"latents": self.latents}

    def finish(self) -> None:
        super().finish()  # the kept epoch's weights first, then their batch norm calibrated
        langevin.calibrate_batch_norm(self.generator, self.cfg.latent_dim, self.device)


def trainer(
    cfg: GeneratorConfig,
    prepared: PreparedData,
    modules: dict[str, nn.Module],
    device: torch.device,
    evaluator: EvaluatorRef | None = None,
) -> GeneratorTrainer:
    picks = selection(cfg, prepared, evaluator, device)
    return GeneratorTrainer(cfg, load_prepared(prepared.path, device), modules["generator"], device, picks)


def curves(history: dict[str, Series]) -> Panels:
    return {
        "reconstruction (per pixel)": {"mse": history.get("train/recon_mse", [])},
        "generator loss": {"loss": history.get("train/g_loss", [])},
        "inferred latents (prior: std 1, mean 0)": {
            "std": history.get("train/latent_std", []),
            "mean |mean|": history.get("train/latent_mean_abs", []),
        },
    }


def evaluate(
    cfg: GeneratorConfig, prepared: PreparedData, trained: Loaded, evaluator: EvaluatorRef, run_id: str
) -> dict[str, float]:
    """FID-LeNet and the class histogram of prior samples; the per-pixel error of held-out test images
    reconstructed through z inferred by Langevin."""
    generator = trained.modules["generator"]
    assert isinstance(generator, gan.Generator)
    export = gan.GeneratorExport(generator)
    device = next(generator.parameters()).device
    metrics = evaluate_samples(cfg, prepared, evaluator, export, cfg.latent_dim, device)
    test = load_prepared(prepared.path, device)["test_images"][: cfg.recon_images].float() / 255.0
    z = infer(
        cfg, generator, torch.zeros(len(test), cfg.latent_dim, device=device), gan.from_unit(test), RECON_INFER_STEPS
    )
    metrics["eval/recon_mse"] = float(langevin.reconstruction_mse(generator, z, test))
    with torch.no_grad():
        pairs = torch.stack([test[:50], gan.to_unit(generator(z[:50]))], dim=1).flatten(
            0, 1
        )  # original, reconstruction
    log_image(run_id, pairs, "evaluation/reconstructions.png", nrow=10)
    log_sample_grid(run_id, export, cfg.latent_dim, False, device, cfg.seed)
    return metrics


def export(cfg: GeneratorConfig, prepared: PreparedData, trained: Loaded) -> ExportSpec:
    """The generator (z, y) -> images in [0, 1] (y ignored)."""
    generator = trained.modules["generator"]
    assert isinstance(generator, gan.Generator)
    metadata = image_metadata(cfg, latent_dim=cfg.latent_dim, module="generator")
    return ExportSpec(gan.GeneratorExport(generator), generator_inputs(cfg, cfg.latent_dim), metadata)
