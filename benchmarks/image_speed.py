"""Training throughput of the image models: images/s per model at its default batch size, and the
MLP VAE fed two ways in the same run: per-item DataLoader with PIL transforms (the classic PyTorch
example) versus rlgen's whole-tensor index gathers.

    python -m benchmarks.image_speed [--data-dir ../shared/data/mnist/raw] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.machine import describe
from models import gan, vae
from models.image_fit import fit_images
from rlgen.config import GANConfig, VAEConfig
from tasks.image_data import read_idx

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


class PILDataset(Dataset):
    """The classic path: one PIL image per item, converted by torchvision's ToTensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def timed(run, images_per_call: int, seconds: float) -> float:
    """Images per second of `run()` repeated for at least `seconds` after one warm-up call."""
    run()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run()
        done += images_per_call
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist" / "raw")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per figure")
    args = parser.parse_args()
    torch.manual_seed(0)
    raw = read_idx(args.data_dir / "t10k-images-idx3-ubyte.gz")[:8000]  # the offline train split's size
    labels_np = read_idx(args.data_dir / "t10k-labels-idx1-ubyte.gz")[:8000].astype(np.int64)
    images = torch.from_numpy(raw).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(labels_np)
    batch = VAEConfig().batch_size
    rows: dict[str, float] = {}

    def whole_tensor_epoch(step_fn, batch_size: int) -> None:
        fit_images(step_fn, images, labels, batch_size, 1, lambda s, m: None)

    model = vae.VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as tasks/vae.py does on CPU and CUDA
    loader = DataLoader(PILDataset(raw, labels_np), batch_size=batch, shuffle=True, drop_last=True)

    def dataloader_epoch() -> None:
        for x, _ in loader:
            vae.train_step(model, opt, x)

    n_epoch = (len(images) // batch) * batch
    rows["vae (DataLoader + PIL, per item)"] = timed(dataloader_epoch, n_epoch, args.seconds)
    rows["vae (whole tensor, index gather)"] = timed(lambda: whole_tensor_epoch(lambda x, y: vae.train_step(model, opt, x), batch), n_epoch, args.seconds)

    for name, build in (("conv-vae", lambda: vae.ConvVAE()), ("cvae", lambda: vae.CVAE())):
        m = build()
        o = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)
        step = (lambda mm, oo: (lambda x, y: vae.train_step(mm, oo, x, y if mm.conditional else None)))(m, o)
        rows[name] = timed(lambda: whole_tensor_epoch(step, batch), n_epoch, args.seconds)

    cfg = GANConfig()
    for name, classes in (("dcgan", 0), ("cgan", 10)):
        g, d = gan.Generator(cfg.latent_dim, n_classes=classes), gan.Discriminator(n_classes=classes)
        og = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(0.5, 0.999), fused=True)
        od = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(0.5, 0.999), fused=True)

        def gan_step(x, y, g=g, d=d, og=og, od=od, classes=classes):
            lab = y if classes else None
            stats = gan.discriminator_step(g, d, od, x, lab, cfg.latent_dim)
            return stats | gan.generator_step(g, d, og, len(x), lab, cfg.latent_dim)

        rows[f"{name} (batch {cfg.batch_size})"] = timed(lambda: whole_tensor_epoch(gan_step, cfg.batch_size), (len(images) // cfg.batch_size) * cfg.batch_size, args.seconds)

    # Langevin dynamics: chain steps per second for a batch of 100 (the descriptor's synthesis and the
    # generator's inference of z), with the flows' default networks and step sizes
    langevin_rows = langevin_speed(args.seconds)

    ratio = rows["vae (whole tensor, index gather)"] / rows["vae (DataLoader + PIL, per item)"]
    machine = describe(torch.device("cpu"))
    print(f"training images/s at batch {batch} ({machine['cpu']}, {machine['torch_threads']} threads, cpu)")
    for name, value in rows.items():
        print(f"  {name:<34} {value:>9,.0f}")
    print(f"  whole tensor vs DataLoader (MLP VAE): {ratio:.2f}x")
    print("Langevin steps/s, batch of 100")
    for name, value in langevin_rows.items():
        print(f"  {name:<34} {value:>9,.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "image_speed.json").write_text(
        json.dumps({"machine": machine, "images_per_sec": rows, "ratio": ratio, "langevin_steps_per_sec": langevin_rows}, indent=2)
    )


def langevin_speed(seconds: float) -> dict[str, float]:
    """Chain steps per second for a batch of 100: descriptor synthesis and generator inference."""
    from models import langevin
    from rlgen.config import DescriptorConfig, GeneratorConfig

    d_cfg, g_cfg = DescriptorConfig(), GeneratorConfig()
    descriptor = langevin.Descriptor(d_cfg.descriptor_channels)
    generator = gan.Generator(g_cfg.latent_dim, g_cfg.generator_channels)
    x0, z0, target = torch.rand(100, 1, 28, 28) * 2 - 1, torch.randn(100, g_cfg.latent_dim), torch.rand(100, 1, 28, 28) * 2 - 1
    steps = 10

    def chains() -> None:
        langevin.langevin_descriptor(descriptor, x0, steps, d_cfg.langevin_step, d_cfg.ref_sigma, d_cfg.langevin_noise)

    def posterior() -> None:
        langevin.langevin_posterior(generator, z0, target, steps, g_cfg.infer_step, g_cfg.gen_sigma)

    return {
        "descriptor chains (images)": timed(chains, steps, seconds),
        "generator inference (latents)": timed(posterior, steps, seconds),
    }


if __name__ == "__main__":
    main()
