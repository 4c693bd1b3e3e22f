"""What the Langevin-driven families share: their networks, optimizers, chains, inference and sample grids.

(Not a family: each of the three has its own folder; this module holds the pieces they have in common.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from models import gan, langevin
from models.training import Grid
from rlgen.config.image import ImageConfig
from rlgen.evaluation.images import Generate, prior_samples
from rlgen.family import Panels, Series

GAP_NOTE = (
    "train/gap_synth_minus_real is mean f(synthesized) - mean f(real): the descriptor's training loss. "
    "It goes negative once f rises on the data faster than on the chains' output; that is expected and "
    "not a sign of divergence. train/f_real and train/f_synth are the two scores over training."
)
RECON_INFER_STEPS = 100  # Langevin steps on z when reconstructing held-out images


class Chains(Protocol):
    """The config keys of a descriptor's Langevin chains (rlgen.config.langevin.DescriptorKeys and LangevinConfig)."""

    @property
    def descriptor_channels(self) -> int: ...
    @property
    def langevin_steps(self) -> int: ...
    @property
    def langevin_step(self) -> float: ...
    @property
    def langevin_noise(self) -> float: ...
    @property
    def ref_sigma(self) -> float: ...
    @property
    def divergence_limit(self) -> float: ...


class Inference(Protocol):
    """The config keys of a generator and the Langevin inference of its latents (GeneratorKeys and LangevinConfig)."""

    @property
    def seed(self) -> int: ...
    @property
    def grid_size(self) -> int: ...
    @property
    def latent_dim(self) -> int: ...
    @property
    def generator_channels(self) -> int: ...
    @property
    def project_norm(self) -> bool: ...
    @property
    def infer_step(self) -> float: ...
    @property
    def gen_sigma(self) -> float: ...
    @property
    def divergence_limit(self) -> float: ...


def build_descriptor(cfg: Chains) -> langevin.Descriptor:
    return langevin.Descriptor(cfg.descriptor_channels)


def build_generator(cfg: Inference) -> gan.Generator:
    """The DCGAN generator architecture (tanh output in [-1, 1]), unconditional."""
    return gan.Generator(cfg.latent_dim, cfg.generator_channels, project_norm=cfg.project_norm)


def adam(module: nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(0.5, 0.999))  # beta1 0.5, as CoopNets


def fixed_noise(cfg: Inference, device: torch.device) -> Tensor:
    """The seeded latent batch rendered as the sample grid every epoch, so that epochs compare."""
    rng = torch.Generator(device=device).manual_seed(cfg.seed)
    return torch.randn(cfg.grid_size, cfg.latent_dim, generator=rng, device=device)


def synthesize(
    cfg: Chains, descriptor: nn.Module, starts: Tensor, snapshot_at: tuple[int, ...] = ()
) -> tuple[Tensor, list[Tensor]]:
    """The descriptor's Langevin chains from `starts` (in [-1, 1]) with the configured step, steps and noise."""
    return langevin.langevin_descriptor(
        descriptor,
        starts,
        cfg.langevin_steps,
        cfg.langevin_step,
        cfg.ref_sigma,
        cfg.langevin_noise,
        cfg.divergence_limit,
        snapshot_at,
    )


def infer(cfg: Inference, generator: nn.Module, z: Tensor, x: Tensor, steps: int) -> Tensor:
    """Langevin on p(z | x) for images x in [-1, 1]."""
    return langevin.langevin_posterior(generator, z, x, steps, cfg.infer_step, cfg.gen_sigma, cfg.divergence_limit)


def chain_grid(cfg: Chains, descriptor: nn.Module, starts: Tensor) -> Grid:
    """A few chains at their first, middle and last Langevin step: one row per chain."""
    _, frames = synthesize(cfg, descriptor, starts, (0, cfg.langevin_steps // 2, cfg.langevin_steps))
    grid = torch.stack(frames, dim=1).flatten(0, 1)  # (chains * 3, 1, 28, 28), row-major by chain
    return Grid(gan.to_unit(grid).clamp(0, 1), nrow=len(frames))


def score_curves(history: dict[str, Series]) -> Panels:
    """Learning-curve panels of the descriptor: its scores of real and synthesized images, and their gap."""
    return {
        "descriptor score f": {
            "real": history.get("train/f_real", []),
            "synthesized": history.get("train/f_synth", []),
        },
        "f(synth) - f(real) (negative is expected)": {"gap": history.get("train/gap_synth_minus_real", [])},
    }


def descriptor_sampler(cfg: Chains, descriptor: nn.Module, starts: Callable[[Tensor], Tensor]) -> Generate:
    """(z, y) -> images in [0, 1]: Langevin chains from `starts(z)`; z only sets the batch (or the proposals)."""

    def generate(z: Tensor, y: Tensor) -> Tensor:
        synth, _ = synthesize(cfg, descriptor, starts(z))
        return gan.to_unit(synth).clamp(0, 1)

    return generate


def calibrated_samples(cfg: ImageConfig, generator: nn.Module, n: int, device: torch.device) -> Tensor:
    """`n` prior samples in [0, 1] as the trained generator gives them (batch norm calibrated on the prior, then
    eval mode, as `finish` leaves it); the generator's statistics and train mode are put back afterwards."""
    assert isinstance(generator, gan.Generator)
    saved = {k: t.clone() for k, t in generator.state_dict().items()}
    langevin.calibrate_batch_norm(generator, generator.latent_dim, device)
    images = prior_samples(cfg, gan.GeneratorExport(generator), generator.latent_dim, n, device)
    generator.load_state_dict(saved)
    generator.train()
    return images
