"""The pipeline's configuration: which models run, at which budget (profile), on which data, how many at once.

Each pipeline model ("branch", declared by its family in rlgen.registry) is a model flow with a fixed set of
keys (its variant), the profile's budget keys, the data keys the pipeline derives from `data_root`, and
finally the user's per-model `overrides`. Every branch's config is built and validated here, before any work.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rlgen.config.base import ConfigError, RunConfig, TrainConfig, validate_config
from rlgen.registry import branches

RUNNER_PACKAGES = {"dask": "prefect_dask", "ray": "prefect_ray"}  # imported only when that runner is used


class PipelineConfig(RunConfig):
    """Keys of `rlgen run pipeline`: the models, the profile, the data, the concurrency and where branches run."""

    family: ClassVar[str] = "pipeline"

    profile: Literal["quick", "full"] = Field(
        "quick",
        description="quick: every model on small budgets (under 15 min on a 2-core CPU); full: the quality budgets "
        "(GPU).",
    )
    models: list[str] = Field(
        default_factory=lambda: list(branches()), description="Pipeline models to run, comma-separated."
    )
    data_root: str | None = Field(
        None,
        description="A folder with mnist/raw, tinyshakespeare/input.txt and wikitext-2/ to read offline; default: "
        "download.",
    )
    dataset: Literal["mnist", "fashion-mnist"] = Field("mnist", description="Dataset of the image models.")
    concurrency: int = Field(2, ge=1, le=32, description="Training branches run at once (Prefect futures).")
    runner: Literal["thread", "dask", "ray"] = Field(
        "thread",
        description="Where the branches run: thread (threads of this process), dask or ray (a local cluster of "
        "`concurrency` "
        "one-thread worker processes, or the one at runner_address; needs the `cluster` extra).",
    )
    runner_address: str | None = Field(
        None,
        description="An existing cluster for runner=dask (scheduler, tcp://host:8786) or ray (ray://host:10001); "
        "default: a local one.",
    )
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Per-model keys, as JSON: {"vae": {"epochs": 5}, "dqn": {"total_steps": 20000}}.',
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @field_validator("overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f'overrides must be JSON such as \'{{"vae": {{"epochs": 5}}}}\' ({err})') from None
        return value

    @model_validator(mode="after")
    def _branches_are_valid(self) -> PipelineConfig:
        known = branches()
        unknown = [m for m in [*self.models, *self.overrides] if m not in known]
        if unknown:
            raise ValueError(f"unknown pipeline model(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        if not self.models:
            raise ValueError("models is empty; name at least one of " + ", ".join(known))
        self._runner_is_usable()
        for name in self.models:
            try:
                self.branch_config(name)
            except ConfigError as err:
                raise ValueError(f"pipeline model {name!r}: {err}") from None
        return self

    def _runner_is_usable(self) -> None:
        """A cluster address only with a cluster runner, and that runner's package installed."""
        if self.runner_address and self.runner == "thread":
            raise ValueError(
                f"runner_address={self.runner_address!r} needs runner=dask or runner=ray; the thread runner has no "
                "cluster"
            )
        package = RUNNER_PACKAGES.get(self.runner)
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"runner={self.runner} needs the {package} package, which is not installed; "
                "install rlgen's cluster extra (pip install -e '.[cluster]') or use runner=thread"
            )

    def branch_values(self, name: str) -> dict[str, Any]:
        """The keys of one branch's model config: variant, budget, data, shared keys, then overrides."""
        family, branch = branches()[name]
        values: dict[str, Any] = {**branch.keys, **getattr(branch, self.profile)}
        values |= {"seed": self.seed, "device": self.device, "experiment": self.experiment}
        values |= family.config.pipeline_data(values, self)
        return values | self.overrides.get(name, {})

    def branch_config(self, name: str) -> TrainConfig:
        """The validated config of one branch's model flow."""
        return validate_config(branches()[name][0].config, self.branch_values(name))
