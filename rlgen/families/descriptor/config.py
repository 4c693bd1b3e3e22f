"""Configuration of the descriptor family."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rlgen.config.langevin import DescriptorKeys, LangevinConfig


class DescriptorConfig(DescriptorKeys, LangevinConfig):
    """Energy-based descriptor net (Xie et al. 2016), sampled by Langevin dynamics."""

    family: ClassVar[str] = "descriptor"

    epochs: int = Field(12, gt=0, description="Passes over the training images.")
    chain_init: Literal["mean", "noise", "persistent"] = Field(
        "noise",
        description="Chain starts: noise (uniform, every iteration), mean (the data's mean image, as the paper), or "
        "persistent (continued across iterations; evaluation then starts fresh chains from noise).",
    )
