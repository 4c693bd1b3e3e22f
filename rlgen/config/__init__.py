"""Typed, validated run configurations. Each family's config class lives with its family (rlgen.families);
here are the base classes, the shared image and Langevin keys, the pipeline's config, and `--set` parsing.

The same object is the Prefect flow parameter, the target of the CLI's `--set key=value`,
the MLflow params of the run, and a key in every checkpoint.
"""

from rlgen.config.base import (
    ConfigError,
    RunConfig,
    TrainConfig,
    config_from_overrides,
    depends,
    describe_fields,
    validate_config,
)

__all__ = [
    "ConfigError",
    "RunConfig",
    "TrainConfig",
    "config_from_overrides",
    "depends",
    "describe_fields",
    "validate_config",
]
