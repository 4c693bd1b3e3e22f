"""Keys of the Langevin-driven models: the descriptor's chains, the generator's inference, and what they share.

Defaults start from the authors' published settings (Xie et al. 2016/2018, Han et al. 2017) and are changed
where measurement on the offline MNIST split showed better; the model docs' table says which.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from rlgen.config.image import ImageConfig


class DescriptorKeys(BaseModel):
    """Keys of the energy-based descriptor net and its Langevin chains."""

    langevin_step: float = Field(
        1.4, gt=0.0, description="Langevin step size d: gradient step d^2/2, noise d * langevin_noise (authors: 0.002)."
    )
    langevin_steps: int = Field(
        20, gt=0, le=1000, description="Langevin steps per chain at every training iteration (authors: 15)."
    )
    langevin_noise: float = Field(
        0.007,
        ge=0.0,
        le=1.0,
        description="Noise scale of the chains: 1 is exact Langevin, below 1 a cooled chain (authors: 1).",
    )
    ref_sigma: float = Field(
        100.0, gt=0.0, description="Std s of the Gaussian reference N(0, s^2 I); large = nearly flat (authors: 0.016)."
    )
    descriptor_lr: float = Field(1e-3, gt=0.0, description="Adam learning rate of the descriptor (beta1 0.5).")
    descriptor_channels: int = Field(16, gt=0, description="Width of the descriptor ConvNet's first layer.")
    energy_penalty: float = Field(
        0.0, ge=0.0, description="Weight alpha of alpha * mean(f(real)^2 + f(synth)^2) in the descriptor's loss."
    )


class GeneratorKeys(BaseModel):
    """Keys of the generator net g(z) + noise."""

    latent_dim: int = Field(20, gt=0, description="Size of the latent vector z.")
    gen_sigma: float = Field(0.3, gt=0.0, description="Std sigma of the generator's observation noise.")
    infer_step: float = Field(0.1, gt=0.0, description="Langevin step size delta of the inference on z.")
    infer_steps: int = Field(10, ge=0, le=1000, description="Langevin steps on z per training iteration.")
    generator_lr: float = Field(1e-3, gt=0.0, description="Adam learning rate of the generator.")
    generator_channels: int = Field(32, gt=0, description="Width of the generator's last hidden layer.")
    project_norm: bool = Field(
        True,
        description="Batch norm after the generator's first layer (DCGAN's); it hides the scale of a batch of z "
        "from g, so only the prior term holds the inferred latents' scale (docs/models/langevin.md).",
    )


class LangevinConfig(ImageConfig):
    """Shared by the Langevin-driven flows: a batch of 100 and sample grids every epoch."""

    batch_size: int = Field(100, gt=0, description="Images per training batch.")
    grid_size: int = Field(64, gt=0, le=256, description="Images in the sample grid logged every epoch.")
    divergence_limit: float = Field(
        100.0,
        gt=1.0,
        description="A Langevin chain value beyond +-this (images in [-1, 1], latents ~ N(0, 1)) stops the run.",
    )
