"""VAE tasks: train, evaluate (negative ELBO, importance-weighted NLL, FID-LeNet), export the decoder."""

from __future__ import annotations

from pathlib import Path

import torch
from prefect import task
from torch import Tensor, nn

from models import vae
from models.common import seed_everything
from rlgen.config import VAEConfig
from tasks import images, tracking
from tasks.checkpoint import load_checkpoint
from tasks.image_data import PreparedData, load_prepared
from tasks.runs import training_device
from tasks.plots import moving_average


def build_model(cfg: VAEConfig) -> nn.Module:
    """The configured VAE variant."""
    if cfg.variant == "conv-vae":
        return vae.ConvVAE(cfg.latent_dim)
    if cfg.variant == "cvae":
        return vae.CVAE(cfg.latent_dim, cfg.hidden, images.n_classes(cfg))
    return vae.VAE(cfg.latent_dim, cfg.hidden)


@torch.no_grad()
def negative_elbo(model: nn.Module, x_uint8: Tensor, y: Tensor, batch: int = 1000) -> float:
    """Mean negative ELBO per image, in nats, over a whole split."""
    model.eval()
    total = 0.0
    for start in range(0, len(x_uint8), batch):
        x = x_uint8[start : start + batch].float() / 255.0
        labels = y[start : start + batch] if model.conditional else None
        logits, mu, logvar = model(x, labels)
        total += float(vae.bernoulli_nll(logits, x).sum() + vae.kl_divergence(mu, logvar).sum())
    model.train()
    return total / len(x_uint8)


def train(cfg: VAEConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    """Train the VAE on whole tensors; validation negative ELBO and a sample grid every epoch."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data = load_prepared(prepared.path, device)
    model = build_model(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    decoder = vae.VAEDecoder(model)
    tracking.log_params(run_id, {"model.parameters": sum(p.numel() for p in model.parameters()), "device.resolved": str(device)})

    def step_fn(x: Tensor, y: Tensor) -> dict[str, Tensor]:
        return vae.train_step(model, optimizer, x, y if model.conditional else None)

    def on_epoch_end(epoch: int, step: int, on_metrics) -> None:
        on_metrics(step, {"val/neg_elbo": negative_elbo(model, data["val_images"], data["val_labels"])})
        model.eval()
        with tracking.temp_dir() as tmp:
            grid = images.sample_grid(decoder, cfg.latent_dim, cfg.conditional, Path(tmp) / f"epoch_{epoch:03d}.png", device, cfg.seed)
            tracking.log_artifact(run_id, grid, "samples")
        model.train()

    result, recorder, seconds = images.run_fit(
        cfg, run_id, data, step_fn, on_epoch_end, ("train/loss", "val/neg_elbo"), {"model": model, "optimizer": optimizer}
    )
    loss = recorder.history["train/loss"]
    curves = {
        "negative ELBO (nats/image)": {"train": loss, "train, smoothed": moving_average(loss, 20), "validation": recorder.history["val/neg_elbo"]},
        "terms (nats/image)": {"reconstruction": recorder.history["train/recon"], "KL": recorder.history["train/kl"]},
    }
    return images.finish_training(cfg, run_id, {"model": model.state_dict()}, result, seconds, curves, "vae.pt")


def load_model(cfg: VAEConfig, trained: images.ImageTrainOutput, device: torch.device) -> nn.Module:
    """The trained VAE from its checkpoint in the tracking store, in eval mode."""
    with tracking.temp_dir() as tmp:
        state = load_checkpoint(tracking.download(trained.run_id, trained.checkpoint, Path(tmp)), device)
    model = build_model(cfg).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


def evaluate(cfg: VAEConfig, prepared: PreparedData, trained: images.ImageTrainOutput, evaluator: images.EvaluatorRef) -> dict[str, float]:
    """Test negative ELBO, importance-weighted NLL (k = iw_samples), FID-LeNet and friends; grids."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    model = load_model(cfg, trained, device)
    data = load_prepared(prepared.path, device)
    x, y = data["test_images"], data["test_labels"]
    n_iw = min(cfg.iw_images, len(x))
    rng = torch.Generator(device=device).manual_seed(cfg.seed)
    iw_nll = vae.importance_weighted_nll(model, x[:n_iw].float() / 255.0, y[:n_iw] if model.conditional else None, k=cfg.iw_samples, generator=rng)
    metrics = {
        "eval/neg_elbo": negative_elbo(model, x, y),
        "eval/iw_nll": float(iw_nll.mean()),
        "eval/iw_images": float(n_iw),
    }
    decoder = vae.VAEDecoder(model)
    metrics.update(images.evaluate_samples(cfg, prepared, evaluator, decoder, cfg.latent_dim, cfg.conditional, device))
    images.log_evaluation(trained.run_id, metrics, trained.steps)

    with torch.no_grad():  # reconstructions: 10 test images over their reconstructions, 5 pairs of rows
        originals = x[:50].float() / 255.0
        recon = torch.sigmoid(model(originals, y[:50] if model.conditional else None)[0])
        pairs = torch.stack([originals.view(5, 10, 1, 28, 28), recon.view(5, 10, 1, 28, 28)], dim=1).view(100, 1, 28, 28)
        images.log_image(trained.run_id, pairs, "evaluation/reconstructions.png")
        mu, _ = model.encode(originals[:20], y[:20] if model.conditional else None)  # 10 interpolations
        t = torch.linspace(0, 1, 10, device=device).view(1, 10, 1)
        z = (mu[0::2, None] * (1 - t) + mu[1::2, None] * t).reshape(100, -1)  # (10 pairs x 10 steps, D)
        labels = y[:20:2].repeat_interleave(10)
        images.log_image(trained.run_id, decoder(z, labels), "evaluation/interpolations.png")
    with tracking.temp_dir() as tmp:
        grid = images.sample_grid(decoder, cfg.latent_dim, cfg.conditional, Path(tmp) / "samples.png", device, cfg.seed)
        tracking.log_artifact(trained.run_id, grid, "evaluation")
    return metrics


def export(cfg: VAEConfig, trained: images.ImageTrainOutput) -> str:
    """TorchScript of the decoder (z, y) -> images, parity-checked, logged under model/."""
    model = load_model(cfg, trained, torch.device("cpu"))
    return images.export_module(
        cfg, vae.VAEDecoder(model), images.generator_inputs(cfg, cfg.latent_dim), trained.run_id, trained.steps,
        {"latent_dim": cfg.latent_dim, "module": "decoder"},
    )


@task(name="vae-train")
def train_task(cfg: VAEConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    return train(cfg, prepared, run_id)


@task(name="vae-evaluate")
def evaluate_task(cfg: VAEConfig, prepared: PreparedData, trained: images.ImageTrainOutput, evaluator: images.EvaluatorRef) -> dict[str, float]:
    return evaluate(cfg, prepared, trained, evaluator)


@task(name="vae-export")
def export_task(cfg: VAEConfig, trained: images.ImageTrainOutput) -> str:
    return export(cfg, trained)
