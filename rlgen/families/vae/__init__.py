"""The VAE family: MLP, convolutional and conditional variational autoencoders on MNIST-like images."""

from rlgen.config.image import QUICK_EVALUATION
from rlgen.families.vae.config import VAEConfig
from rlgen.family import Branch, Family, Primary

QUICK = {**QUICK_EVALUATION, "epochs": 10, "iw_images": 200}

FAMILY = Family(
    name="vae",
    config=VAEConfig,
    summary="Variational autoencoder (MLP, convolutional or conditional) on MNIST-like images.",
    primary=Primary("eval/iw_nll", higher_is_better=False),
    headline=("iw_nll", "neg_elbo", "fid_lenet", "cond_accuracy"),
    evaluation=("fid_samples", "lenet_epochs", "iw_samples", "iw_images"),
    consumer="sample",
    tags=("variant",),
    branches={
        "vae": Branch({"variant": "vae"}, QUICK, {"epochs": 200}),
        "cvae": Branch({"variant": "cvae"}, QUICK, {"epochs": 200}),
    },
    implementation="rlgen.families.vae.train",
)

__all__ = ["FAMILY", "VAEConfig"]
