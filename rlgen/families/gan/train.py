"""What trains, evaluates and exports the GAN family: alternating D and G steps, FID-LeNet, the generator."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models import gan
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
    n_classes,
    prior_samples,
    selection,
)
from rlgen.export.checked import ExportSpec
from rlgen.families.gan.config import GANConfig
from rlgen.family import Loaded, Panels, Series
from rlgen.tracking.artifacts import log_image

__all__ = ["DOMAIN", "build", "curves", "evaluate", "export", "trainer"]


def build(cfg: GANConfig, prepared: PreparedData) -> dict[str, nn.Module]:
    """Generator and discriminator, both conditional for cgan."""
    classes = n_classes(cfg) if cfg.conditional else 0
    return {
        "generator": gan.Generator(cfg.latent_dim, n_classes=classes),
        "discriminator": gan.Discriminator(n_classes=classes),
    }


class GANTrainer(ImageTrainer):
    """Alternate discriminator and generator steps; render a fixed noise batch every epoch."""

    shown = ("train/d_loss", "train/g_loss")

    def __init__(
        self,
        cfg: GANConfig,
        data: dict[str, Tensor],
        generator: gan.Generator,
        discriminator: gan.Discriminator,
        device: torch.device,
        selection: Selection | None = None,
    ) -> None:
        super().__init__(
            data["train_images"],
            data["train_labels"],
            cfg.batch_size,
            cfg.epochs,
            cfg.max_steps,
            cfg.log_every,
            selection,
        )
        self.name, self.cfg, self.generator, self.discriminator = cfg.registered_name, cfg, generator, discriminator
        self.device = device
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.fixed_z = torch.randn(
            cfg.grid_size, cfg.latent_dim, generator=torch.Generator(device=device).manual_seed(cfg.seed), device=device
        )
        self.fixed_y = torch.arange(cfg.grid_size, device=device) % n_classes(cfg)

    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        labels = y if self.cfg.conditional else None
        real_label = 1.0 - self.cfg.label_smoothing
        stats = gan.discriminator_step(
            self.generator, self.discriminator, self.opt_d, x, labels, self.cfg.latent_dim, real_label
        )
        for _ in range(self.cfg.g_steps):  # the seed notes G may need more updates than D
            stats |= gan.generator_step(
                self.generator, self.discriminator, self.opt_g, len(x), labels, self.cfg.latent_dim
            )
        return stats

    def end_of_epoch(self, epoch: int) -> Report:
        self.generator.eval()
        with torch.no_grad():
            grid = gan.to_unit(self.generator(self.fixed_z, self.fixed_y if self.cfg.conditional else None))
        self.generator.train()
        return Report(grids={f"samples/epoch_{epoch:03d}.png": Grid(grid, nrow=8)})

    def prior_samples(self, n: int) -> Tensor:
        self.generator.eval()  # as exported: batch norm with its running statistics
        images = prior_samples(self.cfg, gan.GeneratorExport(self.generator), self.cfg.latent_dim, n, self.device)
        self.generator.train()
        return images

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}


def trainer(
    cfg: GANConfig,
    prepared: PreparedData,
    modules: dict[str, nn.Module],
    device: torch.device,
    evaluator: EvaluatorRef | None = None,
) -> GANTrainer:
    generator, discriminator = modules["generator"], modules["discriminator"]
    assert isinstance(generator, gan.Generator) and isinstance(discriminator, gan.Discriminator)
    picks = selection(cfg, prepared, evaluator, device)
    return GANTrainer(cfg, load_prepared(prepared.path, device), generator, discriminator, device, picks)


def curves(history: dict[str, Series]) -> Panels:
    return {
        "loss": {"discriminator": history.get("train/d_loss", []), "generator": history.get("train/g_loss", [])},
        "D(x) mean": {"real": history.get("train/d_real", []), "fake": history.get("train/d_fake", [])},
    }


def evaluate(
    cfg: GANConfig, prepared: PreparedData, trained: Loaded, evaluator: EvaluatorRef, run_id: str
) -> dict[str, float]:
    """FID-LeNet with its floor, class histogram, conditional accuracy; sample and interpolation grids."""
    export = gan.GeneratorExport(_generator(trained.modules))
    device = next(export.parameters()).device
    metrics = evaluate_samples(cfg, prepared, evaluator, export, cfg.latent_dim, device)
    log_sample_grid(run_id, export, cfg.latent_dim, cfg.conditional, device, cfg.seed)
    with torch.no_grad():  # 10 interpolations between pairs of noise vectors
        rng = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        ends = torch.randn(20, cfg.latent_dim, generator=rng, device=device)
        t = torch.linspace(0, 1, 10, device=device).view(1, 10, 1)
        z = (ends[0::2, None] * (1 - t) + ends[1::2, None] * t).reshape(100, -1)
        labels = torch.arange(10, device=device).repeat_interleave(10)
        log_image(run_id, export(z, labels), "evaluation/interpolations.png")
    return metrics


def export(cfg: GANConfig, prepared: PreparedData, trained: Loaded) -> ExportSpec:
    """The generator (z, y) -> images in [0, 1]."""
    metadata = image_metadata(cfg, latent_dim=cfg.latent_dim, module="generator")
    return ExportSpec(gan.GeneratorExport(_generator(trained.modules)), generator_inputs(cfg, cfg.latent_dim), metadata)


def _generator(modules: dict[str, nn.Module]) -> gan.Generator:
    generator = modules["generator"]
    assert isinstance(generator, gan.Generator)
    return generator
