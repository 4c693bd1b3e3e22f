"""The base of every run configuration, and turning `--set key=value` into one."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class RunConfig(BaseModel):
    """Fields every flow shares: seeding, device placement and where the run is recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(1, ge=0, description="Seed for torch, numpy, python and the environments.")
    device: str = Field(
        "auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."
    )
    experiment: str = Field("rlgen", min_length=1, description="MLflow experiment name.")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps")
        return value


class TrainConfig(RunConfig):
    """Fields of every flow that trains a model: checkpoints, retries and what to do on NaN."""

    checkpoint_every: int = Field(
        500, ge=0, description="Write a resumable checkpoint every N training steps (0: only when stopped by Ctrl-C or SIGTERM)."
    )
    retries: int = Field(
        0, ge=0, le=10, description="Prefect retries of a failed training task; each continues from the last checkpoint."
    )
    nan_rollback: bool = Field(
        False, description="On a non-finite loss or parameter, go back once to the last checkpoint with half the learning rate before failing."
    )
    amp: bool = Field(True, description="bf16 autocast for training on a CUDA device that supports it; no effect on the CPU.")
    compile: bool = Field(False, description="torch.compile the networks before training (slow first steps, faster after).")


C = TypeVar("C", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration the user gave cannot be used; the message says why and how to fix it."""


def config_from_overrides(cls: type[C], pairs: list[str]) -> C:
    """Build `cls` from `key=value` strings; pydantic coerces the strings to each field's type."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}; for example --set seed=3")
        values[key.strip()] = None if value.strip().lower() in {"none", "null"} else value.strip()
    return validate_config(cls, values)


def validate_config(cls: type[C], values: dict[str, Any]) -> C:
    """Validate `values` as `cls`, turning pydantic's report into one readable paragraph."""
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "config"
            if e["type"] == "extra_forbidden":
                known = ", ".join(sorted(cls.model_fields))
                problems.append(f"unknown key {key!r} (known keys: {known})")
            else:
                got = f" (got {e['input']!r})" if e["type"] != "value_error" else ""
                problems.append(f"{key}: {e['msg'].removeprefix('Value error, ').rstrip('.')}{got}")
        name = getattr(cls, "family", cls.__name__)
        raise ConfigError(
            f"Invalid {name} configuration: " + "; ".join(problems) + ". "
            f"See `rlgen run {name} --help` for every key, its type and its default."
        ) from None


def describe_fields(cls: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(key, default, description) for every field of a config class, in declaration order."""
    rows = []
    for key, field in cls.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        rows.append((key, repr(default), field.description or ""))
    return rows
