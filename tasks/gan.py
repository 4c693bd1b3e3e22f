"""GAN tasks: train DCGAN / cGAN, evaluate (FID-LeNet, class histogram, conditional accuracy), export G."""

from __future__ import annotations

from pathlib import Path

import torch
from prefect import task
from torch import Tensor

from models import gan
from models.common import seed_everything
from rlgen.config import GANConfig
from tasks import images, tracking
from tasks.checkpoint import load_checkpoint
from tasks.image_data import PreparedData, load_prepared
from tasks.runs import training_device


def build_models(cfg: GANConfig) -> tuple[gan.Generator, gan.Discriminator]:
    """Generator and discriminator, both conditional for cgan."""
    classes = images.n_classes(cfg) if cfg.conditional else 0
    return gan.Generator(cfg.latent_dim, n_classes=classes), gan.Discriminator(n_classes=classes)


def train(cfg: GANConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    """Alternate discriminator and generator steps; render a fixed noise batch every epoch."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data = load_prepared(prepared.path, device)
    generator, discriminator = (m.to(device) for m in build_models(cfg))
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    fixed_z = torch.randn(cfg.grid_size, cfg.latent_dim, generator=torch.Generator(device=device).manual_seed(cfg.seed), device=device)
    fixed_y = torch.arange(cfg.grid_size, device=device) % images.n_classes(cfg)
    real_label = 1.0 - cfg.label_smoothing
    tracking.log_params(run_id, {
        "model.generator_parameters": sum(p.numel() for p in generator.parameters()),
        "model.discriminator_parameters": sum(p.numel() for p in discriminator.parameters()),
        "device.resolved": str(device),
    })

    def step_fn(x: Tensor, y: Tensor) -> dict[str, Tensor]:
        labels = y if cfg.conditional else None
        stats = gan.discriminator_step(generator, discriminator, opt_d, x, labels, cfg.latent_dim, real_label)
        for _ in range(cfg.g_steps):  # the seed notes G may need more updates than D
            stats |= gan.generator_step(generator, discriminator, opt_g, len(x), labels, cfg.latent_dim)
        return stats

    def on_epoch_end(epoch: int, step: int, on_metrics) -> None:
        generator.eval()
        with torch.no_grad():
            grid = gan.to_unit(generator(fixed_z, fixed_y if cfg.conditional else None))
        generator.train()
        images.log_image(run_id, grid, f"samples/epoch_{epoch:03d}.png", nrow=8)

    result, recorder, seconds = images.run_fit(
        cfg, run_id, data, step_fn, on_epoch_end, ("train/d_loss", "train/g_loss"),
        {"generator": generator, "discriminator": discriminator, "opt_g": opt_g, "opt_d": opt_d},
    )
    h = recorder.history
    curves = {
        "loss": {"discriminator": h["train/d_loss"], "generator": h["train/g_loss"]},
        "D(x) mean": {"real": h["train/d_real"], "fake": h["train/d_fake"]},
    }
    state = {"model": generator.state_dict(), "discriminator": discriminator.state_dict()}
    return images.finish_training(cfg, run_id, state, result, seconds, curves, "gan.pt")


def load_generator(cfg: GANConfig, trained: images.ImageTrainOutput, device: torch.device) -> gan.Generator:
    """The trained generator from its checkpoint, in eval mode (batch norm uses running statistics)."""
    with tracking.temp_dir() as tmp:
        state = load_checkpoint(tracking.download(trained.run_id, trained.checkpoint, Path(tmp)), device)
    generator, _ = build_models(cfg)
    generator.load_state_dict(state["model"])
    return generator.to(device).eval()


def evaluate(cfg: GANConfig, prepared: PreparedData, trained: images.ImageTrainOutput, evaluator: images.EvaluatorRef) -> dict[str, float]:
    """FID-LeNet with its floor, class histogram, conditional accuracy; sample and interpolation grids."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    export = gan.GeneratorExport(load_generator(cfg, trained, device))
    metrics = images.evaluate_samples(cfg, prepared, evaluator, export, cfg.latent_dim, cfg.conditional, device)
    images.log_evaluation(trained.run_id, metrics, trained.steps)
    with tracking.temp_dir() as tmp:
        grid = images.sample_grid(export, cfg.latent_dim, cfg.conditional, Path(tmp) / "samples.png", device, cfg.seed)
        tracking.log_artifact(trained.run_id, grid, "evaluation")
    with torch.no_grad():  # 10 interpolations between pairs of noise vectors
        rng = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        ends = torch.randn(20, cfg.latent_dim, generator=rng, device=device)
        t = torch.linspace(0, 1, 10, device=device).view(1, 10, 1)
        z = (ends[0::2, None] * (1 - t) + ends[1::2, None] * t).reshape(100, -1)
        labels = torch.arange(10, device=device).repeat_interleave(10)
        images.log_image(trained.run_id, export(z, labels), "evaluation/interpolations.png")
    return metrics


def export(cfg: GANConfig, trained: images.ImageTrainOutput) -> str:
    """TorchScript of the generator (z, y) -> images, parity-checked, logged under model/."""
    generator = load_generator(cfg, trained, torch.device("cpu"))
    return images.export_module(
        cfg, gan.GeneratorExport(generator), images.generator_inputs(cfg, cfg.latent_dim), trained.run_id, trained.steps,
        {"latent_dim": cfg.latent_dim, "module": "generator"},
    )


@task(name="gan-train")
def train_task(cfg: GANConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    return train(cfg, prepared, run_id)


@task(name="gan-evaluate")
def evaluate_task(cfg: GANConfig, prepared: PreparedData, trained: images.ImageTrainOutput, evaluator: images.EvaluatorRef) -> dict[str, float]:
    return evaluate(cfg, prepared, trained, evaluator)


@task(name="gan-export")
def export_task(cfg: GANConfig, trained: images.ImageTrainOutput) -> str:
    return export(cfg, trained)
