"""The data report: natural-image statistics of a training split (pixel histogram, gradient kurtosis at 3 scales)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def kurtosis(values: Tensor) -> float:
    """The fourth standardized moment E[(v - mean)^4] / var^2 (3 for a Gaussian); nan when var is 0."""
    centred = values.double() - values.double().mean()
    var = centred.pow(2).mean()
    return (centred.pow(4).mean() / var.pow(2)).item() if var > 0 else float("nan")


def data_report(images: Tensor, path: Path, title: str) -> dict[str, float]:
    """Pixel and horizontal-gradient statistics of uint8 images (N, 1, H, W) at 3 scales, histograms saved to `path`."""
    if (
        images.dtype != torch.uint8
        or images.dim() != 4
        or images.shape[1] != 1
        or images.shape[0] == 0
        or min(images.shape[2:]) < 8
    ):
        raise ValueError(
            f"data_report expects uint8 images (N, 1, H, W) with N >= 1 and H, W >= 8, got "
            f"{images.dtype} {tuple(images.shape)}; pass prepared images, e.g. data['train_images']"
        )
    x = images.detach().cpu().double() / 255.0  # (N, 1, H, W) in [0, 1]
    metrics = {"data/pixel_mean": x.mean().item(), "data/pixel_std": x.std(correction=0).item()}
    responses = {}
    for scale in (1, 2, 4):
        pooled = F.avg_pool2d(x, scale) if scale > 1 else x  # (N, 1, H/s, W/s)
        responses[scale] = (pooled[:, :, :, 1:] - pooled[:, :, :, :-1]).flatten()
        metrics[f"data/kurtosis_scale{scale}"] = kurtosis(responses[scale])

    fig, (ax_pixels, ax_grad) = plt.subplots(1, 2, figsize=(11, 4))
    counts = torch.bincount(images.detach().cpu().flatten().long(), minlength=256).numpy()
    ax_pixels.stairs(counts, np.arange(257), fill=True, color="#4c72b0")
    ax_pixels.set(
        yscale="log",
        xlabel="pixel intensity (0-255)",
        ylabel="pixels",
        title=f"pixels: mean {metrics['data/pixel_mean']:.3f}, std {metrics['data/pixel_std']:.3f}",
    )
    edges = np.linspace(-1.0, 1.0, 121)
    for scale, g in responses.items():
        density, _ = np.histogram(g.numpy(), bins=edges, density=True)
        label = f"{scale}x{scale} pooled" if scale > 1 else "full resolution"
        ax_grad.stairs(density, edges, label=f"{label} (kurtosis {metrics[f'data/kurtosis_scale{scale}']:.1f})")
    sd = responses[1].std().item()
    if sd > 0:
        centres = (edges[:-1] + edges[1:]) / 2
        gauss = np.exp(-0.5 * (centres / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        ax_grad.plot(centres, gauss, "k--", linewidth=1, label="Gaussian, same variance as full resolution")
    ax_grad.set(
        yscale="log",
        xlabel="horizontal gradient x[..., 1:] - x[..., :-1] (pixels in [0, 1])",
        ylabel="density",
        title="gradient filter responses",
    )
    ax_grad.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return metrics
