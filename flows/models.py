"""The model flows: one recipe serves every family, and each family in the registry gets a flow of its own name.

    prepare data -> report it -> evaluation context -> train -> evaluate -> export -> register -> promote -> summarize

`vae_flow`, `dqn_flow`, ... (`flows.models.<family>_flow`) are what prefect.yaml deploys and `rlgen run NAME`
calls; each takes its family's config as its one parameter, which Prefect validates.
"""

from __future__ import annotations

import inspect
from typing import Any

from prefect import Flow, flow

from rlgen.config.base import TrainConfig
from rlgen.family import Family, ModelResult, flow_attribute
from rlgen.registry import FAMILIES, family_of
from rlgen.tracking.lifecycle import tracked_run
from tasks import model as tasks


def recipe(config: TrainConfig, parent_run_id: str | None = None, resume_run_id: str | None = None) -> ModelResult:
    """Train, evaluate, export, register and promote one model, under one parent MLflow run and its training run."""
    prepared = tasks.prepare_task(config)
    name = config.registered_name
    with tracked_run(config, name, parent_run_id, resume=resume_run_id) as parent_id:
        tasks.report_data_task(config, prepared, parent_id)
        context = tasks.context_task(config, prepared, parent_id)
        with tracked_run(config, name, parent_id, role="train", resume=resume_run_id) as run_id:
            trained = tasks.with_retries(config)(config, prepared, run_id, context)
            metrics = tasks.evaluate_task(config, prepared, trained, context)
            model_uri = tasks.export_task(config, prepared, trained)
            version = tasks.register_task(config, run_id, model_uri, metrics)
            decision = tasks.promote_task(config, version, metrics, prepared)
        return tasks.summarize_task(config, parent_id, trained, metrics, version, decision)


def family_flow(family: Family) -> Flow[..., ModelResult]:
    """The Prefect flow of one family: the recipe, named after the family, taking the family's config."""

    def run(config: Any = None, parent_run_id: str | None = None, resume_run_id: str | None = None) -> ModelResult:
        if family_of(config).name != family.name:
            raise TypeError(f"the {family.name} flow takes a {family.config.__name__}, got a {type(config).__name__}")
        return recipe(config, parent_run_id, resume_run_id)

    run.__name__ = run.__qualname__ = flow_attribute(family.name)
    run.__module__ = __name__
    run.__doc__ = family.summary
    parameters = [
        inspect.Parameter(
            "config", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=family.config(), annotation=family.config
        ),
        inspect.Parameter(
            "parent_run_id", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=str | None
        ),
        inspect.Parameter(
            "resume_run_id", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=str | None
        ),
    ]
    run.__signature__ = inspect.Signature(parameters, return_annotation=ModelResult)  # type: ignore[attr-defined]
    run.__annotations__ = {
        "config": family.config,
        "parent_run_id": str | None,
        "resume_run_id": str | None,
        "return": ModelResult,
    }
    return flow(run, name=family.name, log_prints=True, description=family.summary)


_flows: dict[str, Flow[..., ModelResult]] = {}


def flow_for(name: str) -> Flow[..., ModelResult]:
    """The flow of family `name` (built once)."""
    if name not in _flows:
        _flows[name] = family_flow(FAMILIES[name])
    return _flows[name]


def __getattr__(attribute: str) -> Flow[..., ModelResult]:
    """`flows.models.vae_flow` and the like, for every registered family (plugins' too)."""
    for name in FAMILIES:
        if flow_attribute(name) == attribute:
            return flow_for(name)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
