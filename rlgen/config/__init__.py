"""Typed, validated run configurations: one pydantic model per model family.

The same object is the Prefect flow parameter, the target of the CLI's `--set key=value`,
the MLflow params of the run, and a key in every checkpoint.
"""

from rlgen.config.base import (
    ConfigError,
    RunConfig,
    TrainConfig,
    config_from_overrides,
    describe_fields,
    validate_config,
)
from rlgen.config.dqn import DQNConfig
from rlgen.config.image import (
    CoopConfig,
    DescriptorConfig,
    GANConfig,
    GeneratorConfig,
    ImageConfig,
    VAEConfig,
)
from rlgen.config.lm import LMConfig

__all__ = [
    "ConfigError",
    "CoopConfig",
    "DQNConfig",
    "DescriptorConfig",
    "GANConfig",
    "GeneratorConfig",
    "ImageConfig",
    "LMConfig",
    "RunConfig",
    "TrainConfig",
    "VAEConfig",
    "config_from_overrides",
    "describe_fields",
    "validate_config",
]
