"""The pipeline's configuration: which models run, at which budget (profile), on which data, how many at once.

Each pipeline model ("branch") is a model flow with a fixed set of keys (its variant), the profile's budget
keys, the data keys the pipeline derives from `data_root`, and finally the user's per-model `overrides`.
Every branch's config is built and validated here, before any work starts.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from rlgen.config.base import ConfigError, RunConfig, validate_config


class Branch(NamedTuple):
    family: str  # the model flow in rlgen.registry.MODELS
    keys: dict[str, Any]  # what makes this branch (variant, level, ...)
    quick: dict[str, Any]  # the quick profile's budget: every model in under 15 minutes on a 2-core CPU
    full: dict[str, Any]  # the full profile's budget, meant for a GPU


QUICK_IMAGES = {"fid_samples": 2_000, "lenet_epochs": 5}
BRANCHES: dict[str, Branch] = {
    "dqn": Branch("dqn", {}, {"total_steps": 30_000, "eval_episodes": 20}, {"total_steps": 100_000}),
    "vae": Branch("vae", {"variant": "vae"}, {**QUICK_IMAGES, "epochs": 10, "iw_images": 200}, {"epochs": 200}),
    "cvae": Branch("vae", {"variant": "cvae"}, {**QUICK_IMAGES, "epochs": 10, "iw_images": 200}, {"epochs": 200}),
    "dcgan": Branch("gan", {"variant": "dcgan"}, {**QUICK_IMAGES, "epochs": 2}, {"epochs": 50}),
    "cgan": Branch("gan", {"variant": "cgan"}, {**QUICK_IMAGES, "epochs": 2}, {"epochs": 50}),
    "descriptor": Branch("descriptor", {}, {**QUICK_IMAGES, "epochs": 2}, {"epochs": 60}),
    "generator": Branch("generator", {}, {**QUICK_IMAGES, "epochs": 3}, {"epochs": 80}),
    "coop": Branch("coop", {}, {**QUICK_IMAGES, "epochs": 2}, {"epochs": 60}),
    "lm-word": Branch("lm", {"level": "word", "corpus": "wikitext-2"}, {"epochs": 1, "max_steps": 300}, {"epochs": 40}),
    "lm-char": Branch("lm", {"level": "char", "corpus": "tinyshakespeare"}, {"epochs": 1, "max_steps": 300}, {"epochs": 30}),
}
IMAGE_FAMILIES = {"vae", "gan", "descriptor", "generator", "coop"}
RUNNER_PACKAGES = {"dask": "prefect_dask", "ray": "prefect_ray"}  # imported only when that runner is used


class PipelineConfig(RunConfig):
    """Keys of `rlgen run pipeline`: the models, the profile, the data, the concurrency and where branches run."""

    family: ClassVar[str] = "pipeline"

    profile: Literal["quick", "full"] = Field(
        "quick", description="quick: every model on small budgets (under 15 min on a 2-core CPU); full: the quality budgets (GPU)."
    )
    models: list[str] = Field(default_factory=lambda: list(BRANCHES), description="Pipeline models to run, comma-separated.")
    data_root: str | None = Field(
        None,
        description="A folder with mnist/raw, tinyshakespeare/input.txt and wikitext-2/ to read offline; default: download.",
    )
    dataset: Literal["mnist", "fashion-mnist"] = Field("mnist", description="Dataset of the image models.")
    concurrency: int = Field(2, ge=1, le=32, description="Training branches run at once (Prefect futures).")
    runner: Literal["thread", "dask", "ray"] = Field(
        "thread",
        description="Where the branches run: thread (threads of this process), dask or ray (a local cluster of `concurrency` "
        "one-thread worker processes, or the one at runner_address; needs the `cluster` extra).",
    )
    runner_address: str | None = Field(
        None, description="An existing cluster for runner=dask (scheduler, tcp://host:8786) or ray (ray://host:10001); default: a local one."
    )
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description='Per-model keys, as JSON: {"vae": {"epochs": 5}, "dqn": {"total_steps": 20000}}.'
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
                raise ValueError(f"overrides must be JSON such as '{{\"vae\": {{\"epochs\": 5}}}}' ({err})") from None
        return value

    @model_validator(mode="after")
    def _branches_are_valid(self) -> PipelineConfig:
        unknown = [m for m in [*self.models, *self.overrides] if m not in BRANCHES]
        if unknown:
            raise ValueError(f"unknown pipeline model(s) {', '.join(map(repr, unknown))}; known: {', '.join(BRANCHES)}")
        if not self.models:
            raise ValueError("models is empty; name at least one of " + ", ".join(BRANCHES))
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
            raise ValueError(f"runner_address={self.runner_address!r} needs runner=dask or runner=ray; the thread runner has no cluster")
        package = RUNNER_PACKAGES.get(self.runner)
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"runner={self.runner} needs the {package} package, which is not installed; "
                "install rlgen's cluster extra (pip install -e '.[cluster]') or use runner=thread"
            )

    def branch_values(self, name: str) -> dict[str, Any]:
        """The keys of one branch's model config: variant, budget, data, shared keys, then overrides."""
        branch = BRANCHES[name]
        values: dict[str, Any] = {**branch.keys, **getattr(branch, self.profile)}
        values |= {"seed": self.seed, "device": self.device, "experiment": self.experiment}
        if branch.family in IMAGE_FAMILIES:
            values["dataset"] = self.dataset
            if self.data_root:
                values["data_dir"] = str(Path(self.data_root).expanduser() / self.dataset / "raw")
        if branch.family == "lm" and self.data_root:
            corpus = values.get("corpus", "tinyshakespeare")
            values["corpus_path"] = str(Path(self.data_root).expanduser() / corpus / ("input.txt" if corpus == "tinyshakespeare" else ""))
        return values | self.overrides.get(name, {})

    def branch_config(self, name: str) -> RunConfig:
        """The validated config of one branch's model flow."""
        from rlgen.registry import model_spec

        return validate_config(model_spec(BRANCHES[name].family).config, self.branch_values(name))
