"""The model families rlgen knows: the CLI, the deployments and the tests all enumerate MODELS."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from rlgen.config import (
    CoopConfig,
    DescriptorConfig,
    DQNConfig,
    GANConfig,
    GeneratorConfig,
    LMConfig,
    VAEConfig,
)
from rlgen.config.pipeline import PipelineConfig


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: type[BaseModel]
    flow: str  # "module:function", imported only when the flow runs (prefect is slow to import)
    summary: str

    def load_flow(self) -> Callable:
        """Import and return the Prefect flow object."""
        module, _, attr = self.flow.partition(":")
        return getattr(importlib.import_module(module), attr)


MODELS: dict[str, ModelSpec] = {
    "dqn": ModelSpec(
        name="dqn",
        config=DQNConfig,
        flow="flows.dqn:dqn_flow",
        summary="DQN agent on a Gymnasium environment (CartPole-v1 by default).",
    ),
    "vae": ModelSpec(
        name="vae",
        config=VAEConfig,
        flow="flows.vae:vae_flow",
        summary="Variational autoencoder (MLP, convolutional or conditional) on MNIST-like images.",
    ),
    "gan": ModelSpec(
        name="gan",
        config=GANConfig,
        flow="flows.gan:gan_flow",
        summary="DCGAN or conditional GAN on MNIST-like images.",
    ),
    "descriptor": ModelSpec(
        name="descriptor",
        config=DescriptorConfig,
        flow="flows.langevin:descriptor_flow",
        summary="Energy-based descriptor net sampled by Langevin dynamics; exported as an energy (scoring) module.",
    ),
    "generator": ModelSpec(
        name="generator",
        config=GeneratorConfig,
        flow="flows.langevin:generator_flow",
        summary="Generator net trained by alternating back-propagation (Langevin inference of its latent vectors).",
    ),
    "coop": ModelSpec(
        name="coop",
        config=CoopConfig,
        flow="flows.langevin:coop_flow",
        summary="Descriptor and generator trained cooperatively (CoopNets); exports the generator.",
    ),
    "lm": ModelSpec(
        name="lm",
        config=LMConfig,
        flow="flows.lm:lm_flow",
        summary="LSTM (or GRU, tanh-RNN) language model at character level (Tiny Shakespeare) or word level (WikiText-2).",
    ),
}


PIPELINE = ModelSpec(
    name="pipeline",
    config=PipelineConfig,
    flow="flows.pipeline:pipeline_flow",
    summary="The main job: every selected model's flow (concurrent branches), champion promotion, and a report.",
)
COMMANDS: dict[str, ModelSpec] = {"pipeline": PIPELINE, **MODELS}  # what `rlgen run` offers


def model_spec(name: str) -> ModelSpec:
    """The spec of model `name`; an unknown name lists the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"Unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
