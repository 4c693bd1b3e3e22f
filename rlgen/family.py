"""What rlgen knows about a model family, in one record, and the shapes its pieces share.

A `Family` is declarative (its config class, metrics, pipeline branches, the CLI command that uses its
exported model) and cheap to import: the CLI lists every family without importing torch. What trains,
evaluates and exports it lives in its `implementation` module, imported when the family runs.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, cast

from rlgen.config.base import RunConfig, TrainConfig

if TYPE_CHECKING:
    from prefect import Flow
    from torch import Tensor, nn

    from models.training import Trainer
    from rlgen.export.checked import ExportSpec

Consumer = Literal["play", "sample", "score", "generate"]
Series = list[tuple[int, float]]
Panels = dict[str, dict[str, Series]]  # a learning-curve figure: panel title -> series label -> (step, value)


@dataclass(frozen=True)
class Primary:
    """The metric that decides promotion, and which way is better."""

    metric: str
    higher_is_better: bool


@dataclass(frozen=True)
class Branch:
    """One model of the pipeline: the config keys that make it (variant, level, ...) and each profile's budget."""

    keys: Mapping[str, Any]
    quick: Mapping[str, Any]  # every model in under 15 minutes on a 2-core CPU
    full: Mapping[str, Any]  # the quality budgets, meant for a GPU


@dataclass(frozen=True, kw_only=True)
class Command:
    """Something `rlgen run NAME` runs: a config class and the Prefect flow that takes it."""

    name: str
    config: type[RunConfig]
    summary: str
    entrypoint: str = ""  # module path of the flow; default: the family's flow in flows.models

    @property
    def flow_entrypoint(self) -> str:
        """`module.attribute` of the flow, as Prefect deployments name it."""
        return self.entrypoint or f"flows.models.{flow_attribute(self.name)}"

    def load_flow(self) -> Flow[..., Any]:
        """The Prefect flow, imported only now (prefect and torch are slow to import)."""
        from prefect.flows import load_flow_from_entrypoint

        return load_flow_from_entrypoint(self.flow_entrypoint)


@dataclass(frozen=True, kw_only=True)
class Family(Command):
    """A model family: everything the CLI, the pipeline, the report, promotion and the deployments need to know."""

    config: type[TrainConfig]
    primary: Primary
    headline: tuple[str, ...] = ()  # metrics shown beside the primary one in the report and `rlgen runs`
    evaluation: tuple[str, ...] = ()  # config keys the evaluation depends on (with the data: the evaluation key)
    consumer: Consumer = "sample"  # the CLI command that uses the exported model
    tags: tuple[str, ...] = ()  # config keys copied onto each registered version (variant, level, ...)
    branches: Mapping[str, Branch] = field(default_factory=dict)
    implementation: str  # module with what trains, evaluates and exports the family (rlgen.family.Implementation)

    def impl(self) -> Implementation:
        """The implementation, imported on first use."""
        return cast("Implementation", importlib.import_module(self.implementation))

    def metric_keys(self) -> tuple[str, ...]:
        """The primary metric, then the headline metrics, as stored (`eval/...`)."""
        keys = [self.primary.metric, *(k if "/" in k else f"eval/{k}" for k in self.headline)]
        return tuple(dict.fromkeys(keys))


def flow_attribute(name: str) -> str:
    """The attribute of flows.models that holds a family's flow: `vae_flow`, `my_family_flow`."""
    return re.sub(r"\W", "_", name) + "_flow"


# --------------------------------------------------------------------------- what an implementation provides


class Loaded(NamedTuple):
    """A trained model read back from its run: its modules (eval mode, on the device asked for) and buffers."""

    modules: dict[str, nn.Module]
    buffers: dict[str, Tensor]
    step: int


class Domain(Protocol):
    """Where a family's data comes from: images, a text corpus, an environment."""

    def prepare(self, cfg: Any) -> Any:
        """Read (or download), verify and cache the data; a small record of it (paths, hashes, shapes)."""

    def report(self, cfg: Any, prepared: Any, run_id: str) -> None:
        """Record the data's provenance (and a data report) on the flow's run."""

    def context(self, cfg: Any, prepared: Any, parent_id: str) -> Any:
        """What evaluation needs besides the model (the LeNet evaluator of image models), or None."""

    def evaluation_parts(self, cfg: Any, prepared: Any) -> tuple[str, ...]:
        """The data's part of the evaluation key (dataset and content hash, environment, ...)."""


class Implementation(Protocol):
    """What trains, evaluates and exports one family; `Family.impl()` returns it."""

    DOMAIN: Domain

    def build(self, cfg: Any, prepared: Any) -> dict[str, nn.Module]:
        """The family's networks, freshly initialised (on the CPU)."""

    def trainer(self, cfg: Any, prepared: Any, modules: dict[str, nn.Module], device: Any, context: Any) -> Trainer:
        """A trainer over `modules` (already on `device`) for the run; `context` is the domain's (the image
        models' LeNet evaluator, for their validation curve), or None outside a flow."""

    def evaluate(self, cfg: Any, prepared: Any, trained: Loaded, context: Any, run_id: str) -> dict[str, float]:
        """Evaluation metrics of the trained model; figures go to run `run_id`."""

    def export(self, cfg: Any, prepared: Any, trained: Loaded) -> ExportSpec:
        """The module to export, its example inputs and its metadata."""

    def curves(self, history: dict[str, Series]) -> Panels:
        """The learning-curve figure from the recorded metrics."""


class Trained(NamedTuple):
    """A finished training run: where its weights are and how long it took."""

    run_id: str
    checkpoint: str  # artifact path of the weights within the run
    steps: int
    seconds: float
    metrics: dict[str, float]  # train/* and perf/* summary


class ModelResult(NamedTuple):
    """What every model flow returns."""

    family: str
    model: str  # registered NAME/VERSION
    alias: str  # champion or challenger
    parent_run_id: str
    run_id: str  # the training run
    metrics: dict[str, float]  # evaluation, then train/* and perf/*
