"""The generator family: a generator net trained by alternating back-propagation, its latents inferred by Langevin."""

from rlgen.config.image import QUICK_EVALUATION
from rlgen.families.generator.config import GeneratorConfig
from rlgen.family import Branch, Family, Primary

FAMILY = Family(
    name="generator",
    config=GeneratorConfig,
    summary="Generator net trained by alternating back-propagation (Langevin inference of its latent vectors).",
    primary=Primary("eval/fid_lenet", higher_is_better=False),
    headline=("fid_lenet", "recon_mse", "class_entropy"),
    evaluation=("fid_samples", "lenet_epochs"),
    consumer="sample",
    branches={"generator": Branch({}, {**QUICK_EVALUATION, "epochs": 3}, {"epochs": 80})},
    implementation="rlgen.families.generator.train",
)

__all__ = ["FAMILY", "GeneratorConfig"]
