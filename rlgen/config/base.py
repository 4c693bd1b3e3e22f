"""The base of every run configuration, and turning `--set key=value` into one."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rlgen.errors import ConfigError

if TYPE_CHECKING:
    from pydantic.config import JsonDict

    from rlgen.pipeline.config import PipelineConfig


def depends(key: str, defaults: dict[str, Any], description: str, **constraints: Any) -> Any:
    """A field whose default depends on the value of `key`: `defaults[value]` (all of them shown in --help).

    For example `hidden: int = depends("level", {"char": 256, "word": 200}, "Hidden units per layer.")`.
    """
    shown = ", ".join(f"{value} with {key}={choice}" for choice, value in defaults.items())
    extra = cast("JsonDict", {"depends_on": key, "defaults": defaults})
    return Field(None, description=f"{description} Default: {shown}.", json_schema_extra=extra, **constraints)


class RunConfig(BaseModel):
    """Fields every flow shares: seeding, device placement and where the run is recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _dependent_defaults(cls, data: Any) -> Any:
        """Fill each `depends(...)` field the user left unset from the value of the key it depends on."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra
            if not isinstance(extra, dict) or "depends_on" not in extra or filled.get(name) is not None:
                continue
            key = str(extra["depends_on"])
            choice = filled.get(key, cls.model_fields[key].get_default(call_default_factory=True))
            defaults = extra["defaults"]
            assert isinstance(defaults, dict)
            if choice in defaults:
                filled[name] = defaults[choice]
        return filled

    seed: int = Field(1, ge=0, description="Seed for torch, numpy, python and the environments.")
    device: str = Field("auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
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
        500,
        ge=0,
        description="Write a resumable checkpoint every N training steps (0: only when stopped by Ctrl-C or SIGTERM).",
    )
    retries: int = Field(
        0,
        ge=0,
        le=10,
        description="Prefect retries of a failed training task; each continues from the last checkpoint.",
    )
    nan_rollback: bool = Field(
        False,
        description="On a non-finite loss or parameter, go back once to the last checkpoint with half the learning "
        "rate before failing.",
    )
    amp: bool = Field(
        True, description="bf16 autocast for training on a CUDA device that supports it; no effect on the CPU."
    )
    compile: bool = Field(
        False, description="torch.compile the networks before training (slow first steps, faster after)."
    )

    family: ClassVar[str] = ""  # the name of the family this config belongs to (rlgen.registry)

    @property
    def registered_name(self) -> str:
        """The MLflow registered-model name of what this config trains."""
        return self.family

    @classmethod
    def pipeline_data(cls, values: dict[str, Any], pipeline: PipelineConfig) -> dict[str, Any]:
        """The data keys the pipeline derives for a branch of this family from its own keys (data_root, dataset)."""
        return {}


C = TypeVar("C", bound=BaseModel)


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
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "depends_on" in extra:
            defaults = extra["defaults"]
            assert isinstance(defaults, dict)
            shown = " / ".join(f"{value!r} ({choice})" for choice, value in defaults.items())
        else:
            shown = repr(field.get_default(call_default_factory=True))
        rows.append((key, shown, field.description or ""))
    return rows
