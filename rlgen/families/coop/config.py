"""Configuration of the coop family."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from rlgen.config.langevin import DescriptorKeys, GeneratorKeys, LangevinConfig


class CoopConfig(DescriptorKeys, GeneratorKeys, LangevinConfig):
    """Cooperative training (Xie et al. 2018): the generator proposes, the descriptor revises, both learn."""

    family: ClassVar[str] = "coop"

    epochs: int = Field(16, gt=0, description="Passes over the training images (chosen on the validation curve).")
    # langevin_steps 20 and descriptor_lr 1e-3, as the descriptor alone: with the authors' 15 steps and a 5e-4
    # learning rate coop's FID-LeNet was 399 after 8 epochs, with these 135 (docs/models/langevin.md)
    infer_steps: int = Field(0, ge=0, le=1000, description="Langevin steps on z given the revised images (0: keep z).")
