"""Configuration of the GAN family."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rlgen.config.image import ImageConfig


class GANConfig(ImageConfig):
    """DCGAN (Radford et al. 2016) and its class-conditional variant."""

    family: ClassVar[str] = "gan"

    variant: Literal["dcgan", "cgan"] = Field("dcgan", description="dcgan or cgan (class-conditional).")
    epochs: int = Field(22, gt=0, description="Passes over the training images.")
    batch_size: int = Field(64, gt=0, description="Images per training batch (twice the updates of 128 per epoch).")
    latent_dim: int = Field(64, gt=0, description="Size of the noise vector z.")
    lr: float = Field(2e-4, gt=0.0, description="Adam learning rate of both networks.")
    beta1: float = Field(0.5, ge=0.0, lt=1.0, description="Adam beta1 (0.5 as in DCGAN).")
    g_steps: int = Field(1, ge=1, le=10, description="Generator steps per discriminator step.")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=0.5, description="One-sided label smoothing: real targets are 1 - this."
    )
    grid_size: int = Field(64, gt=0, le=256, description="Images in the fixed-noise grid logged every epoch.")

    @property
    def conditional(self) -> bool:
        return self.variant == "cgan"

    @property
    def registered_name(self) -> str:
        return f"{self.variant}-{self.dataset}"
