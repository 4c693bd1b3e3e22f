"""Frechet distance between feature distributions (Heusel et al. 2017, "GANs Trained by a Two Time-Scale
Update Rule Converge to a Local Nash Equilibrium"), plus class-histogram statistics for mode coverage.

With a LeNet judge (`models.lenet.LeNet.features`, 84-d) this is "FID-LeNet": comparable between runs that
use the same classifier checkpoint, not with published Inception FIDs. All statistics are float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.lenet import LeNet, map_batches


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features of shape {tuple(features.shape)}; expected (N, D) with N >= 2")
    f = features.detach().to(torch.float64)
    mu = f.mean(dim=0)  # (D,)
    centred = f - mu  # (N, D)
    sigma = centred.T @ centred / (f.shape[0] - 1)  # (D, D)
    return mu, sigma


def _sqrtm_psd(matrix: Tensor) -> Tensor:
    """Symmetric square root of a positive semi-definite matrix via eigh, tiny negative eigenvalues clamped."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp(min=0.0).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians, in float64."""
    # Heusel et al. 2017, eq. 6. S1 S2 is not symmetric, but it is similar to sqrt(S1) S2 sqrt(S1), which is
    # symmetric PSD: Tr (S1 S2)^(1/2) = sum_i sqrt(lambda_i(sqrt(S1) S2 sqrt(S1))), without scipy's sqrtm.
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    sigma1 = torch.as_tensor(sigma1, dtype=torch.float64)
    sigma2 = torch.as_tensor(sigma2, dtype=torch.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (*mu1.shape, *mu1.shape):
        raise ValueError(
            f"mismatched statistics: mu {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
            f"sigma {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}; expected (D,) means and (D, D) covariances"
        )
    root1 = _sqrtm_psd(sigma1)  # (D, D)
    middle = root1 @ sigma2 @ root1  # (D, D), symmetric PSD up to rounding
    middle = (middle + middle.T) / 2.0
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp(min=0.0).sqrt().sum()
    diff = mu1 - mu2
    distance = diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2.0 * trace_sqrt
    return max(distance.item(), 0.0)  # rounding can leave about -1e-12 for identical statistics


def fid_from_features(a: Tensor, b: Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (N_a, D) and (N_b, D)."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def extract_features(model: LeNet, images: Tensor, batch_size: int = 1000) -> Tensor:
    """`model.features(images)` (N, F) in eval mode and batches, returned on the CPU."""
    return map_batches(model, lambda batch: model.features(batch).cpu(), images, batch_size)


def class_histogram(logits: Tensor) -> Tensor:
    """Fraction of samples (n_classes,) whose argmax class is each class; sums to 1."""
    counts = torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1])  # (n_classes,)
    return counts.to(torch.float64) / counts.sum()


def entropy(p: Tensor) -> float:
    """Shannon entropy -sum p log p in nats, with 0 log 0 = 0; log(n_classes) means every class equally often."""
    p = p.to(torch.float64)
    return -torch.special.xlogy(p, p).sum().item()


class FIDJudge:
    """FID-LeNet of generated images against fixed real images, whose statistics are computed once."""

    def __init__(self, model: LeNet, real: Tensor) -> None:
        self.model = model
        self.real = feature_statistics(extract_features(model, real))  # mean (F,), covariance (F, F)

    @torch.no_grad()
    def __call__(self, fake: Tensor) -> float:
        """FID-LeNet of images `fake` (N, 1, H, W) in [0, 1] against the real images."""
        return frechet_distance(*feature_statistics(extract_features(self.model, fake)), *self.real)
