"""Configuration of the generator family."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from rlgen.config.langevin import GeneratorKeys, LangevinConfig


class GeneratorConfig(GeneratorKeys, LangevinConfig):
    """Generator net by alternating back-propagation (Han et al. 2017): one latent vector per training image."""

    family: ClassVar[str] = "generator"

    epochs: int = Field(
        8, gt=0, description="Passes over the training images (longer runs drift the latents from the prior)."
    )
    recon_images: int = Field(
        1_000, gt=0, description="Held-out test images reconstructed in the evaluation (recon_mse)."
    )
