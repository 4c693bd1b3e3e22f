"""Configuration of the generator family."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from rlgen.config.langevin import GeneratorKeys, LangevinConfig


class GeneratorConfig(GeneratorKeys, LangevinConfig):
    """Generator net by alternating back-propagation (Han et al. 2017): one latent vector per training image."""

    family: ClassVar[str] = "generator"

    epochs: int = Field(16, gt=0, description="Passes over the training images (chosen on the validation curve).")
    # 0.05, not Han et al.'s 0.1: each gradient step on z leaves the sphere that g (batch norm after its first
    # layer) cannot tell apart, so bigger steps inflate the latents faster than the prior term pulls them back:
    # latent std 1.48 after 16 epochs at 0.1, 1.14 at 0.05 (docs/models/langevin.md, "The latents and the prior")
    infer_step: float = Field(0.05, gt=0.0, description="Langevin step size delta of the inference on z (Han: 0.1).")
    recon_images: int = Field(
        1_000, gt=0, description="Held-out test images reconstructed in the evaluation (recon_mse)."
    )
