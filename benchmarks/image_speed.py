"""Training throughput of the eight image models: images/s at each default batch size, measured on the same
training step the flow builds (tasks/vae.py, gan.py, langevin.py) fed by rlgen's whole-tensor loop
(models/image_fit.py); the MLP VAE also fed the classic way, a per-item DataLoader with PIL transforms, in the
same run; and Langevin chain steps/s of the descriptor and the generator.

    python -m benchmarks.image_speed [--data-dir ../shared/data/mnist/raw] [--seconds 20] [--device cpu]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.common import DATA, RESULTS, Figure, Options, print_table, save, time_for
from models import gan, langevin, vae
from models.common import resolve_device
from models.image_fit import fit_images
from rlgen.config import CoopConfig, DescriptorConfig, GANConfig, GeneratorConfig, VAEConfig
from tasks import gan as gan_tasks
from tasks import langevin as langevin_tasks
from tasks import vae as vae_tasks
from tasks.image_data import read_idx

MODELS = ("vae", "conv-vae", "cvae", "dcgan", "cgan", "descriptor", "generator", "coop")
StepFn = Callable[[Tensor, Tensor], dict[str, Tensor]]


class Step(NamedTuple):
    fn: StepFn  # (images in [0, 1], labels or rows) -> stats
    batch_size: int
    by_row: bool = False  # fed the images' row numbers instead of labels (the generator keeps one z per image)


def build_step(name: str, images: Tensor) -> Step:
    """Image model `name`'s training step with its default config, as its flow's trainer builds it.

    Mirrors the `step_fn` closures inside tasks/vae.py, tasks/gan.py and tasks/langevin.py (same builders,
    optimizers and models/ updates); keep the two in step if a trainer changes.
    """
    device = images.device  # the training images (N, 1, 28, 28) uint8, on the training device
    fused = device.type in ("cpu", "cuda")
    if name in ("vae", "conv-vae", "cvae"):
        cfg = VAEConfig(variant=name)
        model = vae_tasks.build_model(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=fused)
        return Step(lambda x, y: vae.train_step(model, opt, x, y if model.conditional else None), cfg.batch_size)
    if name in ("dcgan", "cgan"):
        cfg = GANConfig(variant=name)
        g, d = (m.to(device) for m in gan_tasks.build_models(cfg))
        opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999)) for m in (g, d))

        def gan_step(x: Tensor, y: Tensor) -> dict[str, Tensor]:
            labels = y if cfg.conditional else None
            stats = gan.discriminator_step(g, d, opt_d, x, labels, cfg.latent_dim, 1.0 - cfg.label_smoothing)
            for _ in range(cfg.g_steps):
                stats |= gan.generator_step(g, d, opt_g, len(x), labels, cfg.latent_dim)
            return stats

        return Step(gan_step, cfg.batch_size)
    if name == "descriptor":
        cfg = DescriptorConfig()
        descriptor = langevin_tasks.build_descriptor(cfg).to(device)
        opt = langevin_tasks.adam(descriptor, cfg.descriptor_lr)
        starts = langevin.ChainStarts(cfg.chain_init, gan.from_unit(images.float().mean(0) / 255.0))

        def descriptor_step(x: Tensor, y: Tensor) -> dict[str, Tensor]:
            x0, slots = starts.draw(len(x))
            synth, _ = langevin_tasks.synthesize(cfg, descriptor, x0)
            starts.keep(slots, synth)
            return langevin.descriptor_step(descriptor, opt, x, synth)

        return Step(descriptor_step, cfg.batch_size)
    if name == "generator":
        cfg = GeneratorConfig()
        generator = langevin_tasks.build_generator(cfg).to(device)
        opt = langevin_tasks.adam(generator, cfg.generator_lr)
        latents = torch.randn(len(images), cfg.latent_dim, device=device)  # one z per training image

        def generator_step(x: Tensor, rows: Tensor) -> dict[str, Tensor]:
            target = gan.from_unit(x)
            z = langevin_tasks.infer(cfg, generator, latents[rows], target, cfg.infer_steps)
            latents[rows] = z
            return langevin.generator_step(generator, opt, z, target, cfg.gen_sigma)

        return Step(generator_step, cfg.batch_size, by_row=True)
    if name == "coop":
        cfg = CoopConfig()
        descriptor, generator = (
            langevin_tasks.build_descriptor(cfg).to(device),
            langevin_tasks.build_generator(cfg).to(device),
        )
        opt_d, opt_g = (
            langevin_tasks.adam(descriptor, cfg.descriptor_lr),
            langevin_tasks.adam(generator, cfg.generator_lr),
        )

        def coop_step(x: Tensor, y: Tensor) -> dict[str, Tensor]:
            z = torch.randn(len(x), cfg.latent_dim, device=device)
            with torch.no_grad():
                proposed = generator(z)
            revised, _ = langevin_tasks.synthesize(cfg, descriptor, proposed)
            if cfg.infer_steps:
                z = langevin_tasks.infer(cfg, generator, z, revised, cfg.infer_steps)
            stats = langevin.descriptor_step(descriptor, opt_d, x, revised)
            return stats | langevin.generator_step(generator, opt_g, z, revised, cfg.gen_sigma)

        return Step(coop_step, cfg.batch_size)
    raise KeyError(f"unknown image model {name!r}; known: {', '.join(MODELS)}")


def load_images(data_dir: Path, n: int = 8000) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` offline MNIST images (N, 28, 28) uint8 and labels: the offline train split's size."""
    raw = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")[:n]
    return raw, read_idx(data_dir / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64)


def one_batch(step: Step, images: Tensor, labels: Tensor) -> Callable[[], None]:
    """A call that trains `step` on one batch through fit_images (a permutation, an index gather and a scale to [0,
    1])."""
    feed = torch.arange(len(images), device=images.device) if step.by_row else labels

    def run() -> None:
        fit_images(step.fn, images, feed, step.batch_size, 1, lambda s, m: None, max_steps=1)

    return run


def whole_tensor_rate(step: Step, images: Tensor, labels: Tensor, seconds: float, device: torch.device) -> float:
    """Training images/s of `step` fed by rlgen's whole-tensor loop."""
    return time_for(one_batch(step, images, labels), seconds, device=device).per_sec(step.batch_size)


class PILDataset(Dataset):
    """The classic path: one PIL image per item, converted by torchvision's ToTensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def dataloader_rate(step: Step, raw: np.ndarray, labels: np.ndarray, seconds: float, device: torch.device) -> float:
    """Images/s of `step` fed by a shuffling DataLoader over PIL images (no workers, as the classic example on CPU)."""
    loader = DataLoader(PILDataset(raw, labels), batch_size=step.batch_size, shuffle=True, drop_last=True)

    def endless() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield from loader

    batches = endless()

    def run() -> None:
        x, y = next(batches)
        step.fn(x.to(device), y.to(device))

    return time_for(run, seconds, device=device).per_sec(step.batch_size)


def langevin_figures(seconds: float, device: torch.device) -> list[Figure]:
    """Chain steps/s for a batch of 100: the descriptor's synthesis and the generator's inference of z."""
    d_cfg, g_cfg = DescriptorConfig(), GeneratorConfig()
    descriptor = langevin_tasks.build_descriptor(d_cfg).to(device)
    generator = langevin_tasks.build_generator(g_cfg).to(device)
    x0 = torch.rand(100, 1, 28, 28, device=device) * 2 - 1
    z0, target = torch.randn(100, g_cfg.latent_dim, device=device), torch.rand(100, 1, 28, 28, device=device) * 2 - 1
    steps = 10
    d_cfg = d_cfg.model_copy(update={"langevin_steps": steps})
    chains = time_for(lambda: langevin_tasks.synthesize(d_cfg, descriptor, x0), seconds, device=device)
    posterior = time_for(lambda: langevin_tasks.infer(g_cfg, generator, z0, target, steps), seconds, device=device)
    return [
        Figure(
            "langevin",
            "descriptor chains (images)",
            chains.per_sec(steps),
            "steps/s",
            "batch 100, default descriptor",
            str(device),
        ),
        Figure(
            "langevin",
            "generator inference (latents)",
            posterior.per_sec(steps),
            "steps/s",
            "batch 100, default generator",
            str(device),
        ),
    ]


def image_figures(seconds: float, device: torch.device, data_dir: Path = DATA / "mnist" / "raw") -> list[Figure]:
    """Training images/s of every image model, and the MLP VAE through the per-item DataLoader for comparison."""
    torch.manual_seed(0)
    raw, labels_np = load_images(data_dir)
    images = torch.from_numpy(raw).unsqueeze(1).to(device)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(labels_np).to(device)
    figures = []
    for name in MODELS:
        step = build_step(name, images)
        rate = whole_tensor_rate(step, images, labels, seconds, device)
        figures.append(Figure("images", name, rate, "images/s", f"batch {step.batch_size}, whole tensors", str(device)))
        if name == "vae":
            per_item = dataloader_rate(build_step(name, images), raw, labels_np, seconds, device)
            figures.append(
                Figure(
                    "images",
                    "vae, DataLoader + PIL",
                    per_item,
                    "images/s",
                    f"batch {step.batch_size}, per item",
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
