"""Training throughput of the eight image models: images/s at each default config's batch size, measured on the
family's own trainer (rlgen/families/<family>/train.py, built as the flow builds it, its budget raised) stepped over
the prepared training split, its whole-tensor loop (models/image_trainer.py) and end-of-epoch reports included; the
MLP VAE's update also fed the classic way, a per-item DataLoader with PIL transforms, in the same run; and Langevin
chain steps/s of the descriptor and the generator.

    python -m benchmarks.image_speed [--data-dir ../shared/data/mnist/raw] [--seconds 20] [--device cpu]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.common import (
    DATA,
    RESULTS,
    Figure,
    Options,
    Training,
    build_trainer,
    print_table,
    save,
    scratch_home,
    time_for,
)
from models.common import autocast, resolve_device
from models.image_trainer import ImageTrainer
from rlgen import steps
from rlgen.config.image import ImageConfig
from rlgen.data.images import load_prepared
from rlgen.families.coop import CoopConfig
from rlgen.families.descriptor import DescriptorConfig
from rlgen.families.gan import GANConfig
from rlgen.families.generator import GeneratorConfig
from rlgen.families.langevin import build_descriptor, build_generator, infer, synthesize
from rlgen.families.vae import VAEConfig

MODELS = ("vae", "conv-vae", "cvae", "dcgan", "cgan", "descriptor", "generator", "coop")
EPOCHS = 10_000  # a budget no measurement exhausts: an image trainer's epochs set its budget and nothing else


def config(name: str, data_dir: Path, device: torch.device) -> ImageConfig:
    """Image model `name`'s default config, reading the offline IDX files in `data_dir`, its budget raised."""
    keys = {"data_dir": str(data_dir), "device": str(device), "epochs": EPOCHS}
    if name in ("vae", "conv-vae", "cvae"):
        return VAEConfig(variant=name, **keys)
    if name in ("dcgan", "cgan"):
        return GANConfig(variant=name, **keys)
    configs: dict[str, type[ImageConfig]] = {
        "descriptor": DescriptorConfig,
        "generator": GeneratorConfig,
        "coop": CoopConfig,
    }
    if name not in configs:
        raise KeyError(f"unknown image model {name!r}; known: {', '.join(MODELS)}")
    return configs[name](**keys)


def trainer(name: str, data_dir: Path, device: torch.device) -> tuple[Training, ImageConfig]:
    """Image model `name`'s trainer on its prepared training split, as its flow builds it (the data prepared, or
    found in the cache, under the current rlgen home)."""
    cfg = config(name, data_dir, device)
    return build_trainer(cfg, steps.prepare(cfg)), cfg


def image_trainer(training: Training) -> ImageTrainer:
    trainer = training.trainer
    assert isinstance(trainer, ImageTrainer), f"{trainer.name} is not an ImageTrainer"
    return trainer


class PILDataset(Dataset):
    """The classic path: one PIL image per item, converted by torchvision's ToTensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def dataloader_rate(training: Training, raw: np.ndarray, labels: np.ndarray, seconds: float) -> float:
    """Images/s of the trainer's own update (`train_batch`) fed by a shuffling DataLoader over PIL images (no workers,
    as the classic example on CPU) instead of its whole-tensor gathers."""
    trainer, device = image_trainer(training), training.device
    loader = DataLoader(PILDataset(raw, labels), batch_size=trainer.batch_size, shuffle=True, drop_last=True)

    def endless() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield from loader

    batches = endless()

    def run() -> None:
        x, y = next(batches)
        trainer.train_batch(x.to(device), y.to(device))

    with autocast(device, training.amp):
        return time_for(run, seconds, device=device).per_sec(trainer.batch_size)


def langevin_figures(seconds: float, device: torch.device) -> list[Figure]:
    """Chain steps/s for a batch of 100: the descriptor's synthesis and the generator's inference of z, with the
    families' own networks and chains (rlgen/families/langevin.py)."""
    d_cfg, g_cfg = DescriptorConfig(), GeneratorConfig()
    descriptor = build_descriptor(d_cfg).to(device)
    generator = build_generator(g_cfg).to(device)
    x0 = torch.rand(100, 1, 28, 28, device=device) * 2 - 1
    z0, target = torch.randn(100, g_cfg.latent_dim, device=device), torch.rand(100, 1, 28, 28, device=device) * 2 - 1
    n_steps = 10
    d_cfg = d_cfg.model_copy(update={"langevin_steps": n_steps})
    with autocast(device, d_cfg.amp):
        chains = time_for(lambda: synthesize(d_cfg, descriptor, x0), seconds, device=device)
        posterior = time_for(lambda: infer(g_cfg, generator, z0, target, n_steps), seconds, device=device)
    return [
        Figure(
            "langevin",
            "descriptor chains (images)",
            chains.per_sec(n_steps),
            "steps/s",
            "batch 100, default descriptor",
            str(device),
        ),
        Figure(
            "langevin",
            "generator inference (latents)",
            posterior.per_sec(n_steps),
            "steps/s",
            "batch 100, default generator",
            str(device),
        ),
    ]


def image_figures(seconds: float, device: torch.device, data_dir: Path = DATA / "mnist" / "raw") -> list[Figure]:
    """Training images/s of every image model's trainer, and the MLP VAE's update through the per-item DataLoader for
    comparison."""
    figures = []
    with scratch_home("rlgen-bench-images-"):
        for name in MODELS:
            cfg = config(name, data_dir, device)
            prepared = steps.prepare(cfg)
            training = build_trainer(cfg, prepared)
            n_images = image_trainer(training).images.shape[0]
            rate = training.time(seconds).per_sec(cfg.batch_size)
            detail = f"batch {cfg.batch_size}, {n_images:,} images, whole tensors, end-of-epoch reports included"
            figures.append(Figure("images", name, rate, "images/s", detail, str(device)))
            if name == "vae":
                data = load_prepared(prepared.path)  # the same training split, as numpy arrays
                raw, labels = data["train_images"][:, 0].numpy(), data["train_labels"].numpy()
                per_item = dataloader_rate(build_trainer(cfg, prepared), raw, labels, seconds)
                figures.append(
                    Figure(
                        "images",
                        "vae, DataLoader + PIL",
                        per_item,
                        "images/s",
                        f"batch {cfg.batch_size}, per item, the trainer's update",
                        str(device),
                    )
                )
                figures.append(
                    Figure("images", "vae, whole tensors vs DataLoader", rate / per_item, "x", "speed-up", str(device))
                )
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's image-speed figures: 4 s per figure with --quick, 20 s otherwise."""
    return image_figures(4.0 if opts.quick else 20.0, opts.device)


def langevin_suite_figures(opts: Options) -> list[Figure]:
    """The suite's Langevin figures: 4 s each with --quick, 20 s otherwise."""
    return langevin_figures(4.0 if opts.quick else 20.0, opts.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA / "mnist" / "raw")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per figure")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = image_figures(args.seconds, device, args.data_dir) + langevin_figures(args.seconds, device)
    print_table(rows, "image models: training speed")
    save(rows, RESULTS / "image_speed.json")


if __name__ == "__main__":
    main()
