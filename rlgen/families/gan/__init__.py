"""The GAN family: DCGAN and the class-conditional cGAN on MNIST-like images."""

from rlgen.config.image import QUICK_EVALUATION
from rlgen.families.gan.config import GANConfig
from rlgen.family import Branch, Family, Primary

QUICK = {**QUICK_EVALUATION, "epochs": 2}

FAMILY = Family(
    name="gan",
    config=GANConfig,
    summary="DCGAN or conditional GAN on MNIST-like images.",
    primary=Primary("eval/fid_lenet", higher_is_better=False),
    headline=("fid_lenet", "cond_accuracy", "class_entropy"),
    evaluation=("fid_samples", "lenet_epochs"),
    consumer="sample",
    tags=("variant",),
    branches={
        "dcgan": Branch({"variant": "dcgan"}, QUICK, {"epochs": 50}),
        "cgan": Branch({"variant": "cgan"}, QUICK, {"epochs": 50}),
    },
    implementation="rlgen.families.gan.train",
)

__all__ = ["FAMILY", "GANConfig"]
