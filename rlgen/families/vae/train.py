"""What trains, evaluates and exports the VAE family: negative ELBO, importance-weighted NLL, FID-LeNet; the decoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models import vae
from models.image_trainer import ImageTrainer, Selection
from models.training import Grid, Report
from rlgen.data.images import PreparedData, load_prepared
from rlgen.domains import IMAGES as DOMAIN
from rlgen.evaluation.images import (
    EvaluatorRef,
    evaluate_samples,
    generator_inputs,
    grid_images,
    image_metadata,
    log_sample_grid,
    n_classes,
    prior_samples,
    selection,
)
from rlgen.export.checked import ExportSpec
from rlgen.families.vae.config import VAEConfig
from rlgen.family import Loaded, Panels, Series
from rlgen.plots import moving_average
from rlgen.tracking.artifacts import log_image

__all__ = ["DOMAIN", "build", "curves", "evaluate", "export", "trainer"]


def build(cfg: VAEConfig, prepared: PreparedData) -> dict[str, nn.Module]:
    """The configured VAE variant."""
    if cfg.variant == "conv-vae":
        return {"model": vae.ConvVAE(cfg.latent_dim)}
    if cfg.variant == "cvae":
        return {"model": vae.CVAE(cfg.latent_dim, cfg.hidden, n_classes(cfg))}
    return {"model": vae.VAE(cfg.latent_dim, cfg.hidden)}


class VAETrainer(ImageTrainer):
    """Adam on the negative ELBO; validation negative ELBO and a sample grid every epoch."""

    shown = ("train/loss", "val/neg_elbo")

    def __init__(
        self,
        cfg: VAEConfig,
        data: dict[str, Tensor],
        model: vae.AnyVAE,
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
        self.name, self.cfg, self.model, self.device = cfg.registered_name, cfg, model, device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
        self.val_images, self.val_labels = data["val_images"], data["val_labels"]

    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        return vae.train_step(self.model, self.optimizer, x, y if self.cfg.conditional else None)

    def end_of_epoch(self, epoch: int) -> Report:
        val = vae.negative_elbo(self.model, self.val_images, self.val_labels)
        self.model.eval()
        grid = grid_images(
            vae.VAEDecoder(self.model), self.cfg.latent_dim, self.cfg.conditional, self.device, self.cfg.seed
        )
        self.model.train()
        return Report({"val/neg_elbo": val}, {f"samples/epoch_{epoch:03d}.png": Grid(grid)})

    def prior_samples(self, n: int) -> Tensor:
        self.model.eval()
        images = prior_samples(self.cfg, vae.VAEDecoder(self.model), self.cfg.latent_dim, n, self.device)
        self.model.train()
        return images

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}


def _vae(modules: dict[str, nn.Module]) -> vae.AnyVAE:
    model = modules["model"]
    assert isinstance(model, vae.VAE | vae.ConvVAE | vae.CVAE)
    return model


def trainer(
    cfg: VAEConfig,
    prepared: PreparedData,
    modules: dict[str, nn.Module],
    device: torch.device,
    evaluator: EvaluatorRef | None = None,
) -> VAETrainer:
    picks = selection(cfg, prepared, evaluator, device)
    return VAETrainer(cfg, load_prepared(prepared.path, device), _vae(modules), device, picks)


def curves(history: dict[str, Series]) -> Panels:
    loss = history.get("train/loss", [])
    return {
        "negative ELBO (nats/image)": {
            "train": loss,
            "train, smoothed": moving_average(loss, 20),
            "validation": history.get("val/neg_elbo", []),
        },
        "terms (nats/image)": {"reconstruction": history.get("train/recon", []), "KL": history.get("train/kl", [])},
    }


def evaluate(
    cfg: VAEConfig, prepared: PreparedData, trained: Loaded, evaluator: EvaluatorRef, run_id: str
) -> dict[str, float]:
    """Test negative ELBO, importance-weighted NLL (k = iw_samples), FID-LeNet and friends; reconstructions and
    grids."""
    model = _vae(trained.modules)
    device = next(model.parameters()).device
    data = load_prepared(prepared.path, device)
    x, y = data["test_images"], data["test_labels"]
    n_iw = min(cfg.iw_images, len(x))
    rng = torch.Generator(device=device).manual_seed(cfg.seed)
    labels = y[:n_iw] if cfg.conditional else None
    iw_nll = vae.importance_weighted_nll(model, x[:n_iw].float() / 255.0, labels, k=cfg.iw_samples, generator=rng)
    metrics = {
        "eval/neg_elbo": vae.negative_elbo(model, x, y),
        "eval/iw_nll": float(iw_nll.mean()),
        "eval/iw_images": float(n_iw),
    }
    decoder = vae.VAEDecoder(model)
    metrics |= evaluate_samples(cfg, prepared, evaluator, decoder, cfg.latent_dim, device)
    with torch.no_grad():  # reconstructions: 10 test images over their reconstructions, 5 pairs of rows
        originals = x[:50].float() / 255.0
        recon = torch.sigmoid(model(originals, y[:50] if cfg.conditional else None)[0])
        pairs = torch.stack([originals.view(5, 10, 1, 28, 28), recon.view(5, 10, 1, 28, 28)], dim=1).view(
            100, 1, 28, 28
        )
        log_image(run_id, pairs, "evaluation/reconstructions.png")
        mu, _ = model.encode(originals[:20], y[:20] if cfg.conditional else None)  # 10 interpolations
        t = torch.linspace(0, 1, 10, device=device).view(1, 10, 1)
        z = (mu[0::2, None] * (1 - t) + mu[1::2, None] * t).reshape(100, -1)  # (10 pairs x 10 steps, D)
        log_image(run_id, decoder(z, y[:20:2].repeat_interleave(10)), "evaluation/interpolations.png")
    log_sample_grid(run_id, decoder, cfg.latent_dim, cfg.conditional, device, cfg.seed)
    return metrics


def export(cfg: VAEConfig, prepared: PreparedData, trained: Loaded) -> ExportSpec:
    """The decoder (z, y) -> images in [0, 1]."""
    metadata = image_metadata(cfg, latent_dim=cfg.latent_dim, module="decoder")
    return ExportSpec(vae.VAEDecoder(_vae(trained.modules)), generator_inputs(cfg, cfg.latent_dim), metadata)
