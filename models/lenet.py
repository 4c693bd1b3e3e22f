"""LeNet-5 style classifier (LeCun et al. 1998) for 1x28x28 digits: the judge behind FID-LeNet and mode coverage.

Input images are float in [0, 1] (the data pipeline scales pixels before they arrive); labels int64 in [0, n_classes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LeNet(nn.Module):
    """conv5(6)-pool-conv5(16)-pool-fc120-fc84-fc(n_classes), ReLU; `features` gives the 84-d penultimate layer."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.conv = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),  # (B, 6, 28, 28)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5),  # (B, 16, 10, 10)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 16, 5, 5)
            nn.Flatten(),  # (B, 400)
        )
        self.fc = nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.head = nn.Linear(84, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, 84), the embedding used for FID-LeNet."""
        return self.fc(self.conv(x.view(-1, 1, 28, 28)))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, n_classes) for images x (B, 1, 28, 28) in [0, 1]."""
        return self.head(self.features(x))  # (B, n_classes) logits


def train_step(model: LeNet, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """One gradient step on cross-entropy; returns detached "train/loss" and "train/accuracy"."""
    logits = model(x)  # (B, n_classes)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    accuracy = (logits.detach().argmax(dim=1) == y).float().mean()
    return {"train/loss": loss.detach(), "train/accuracy": accuracy}


@torch.no_grad()
def map_batches(model: nn.Module, fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 1000) -> Tensor:
    """`fn` over `x` in batches on the model's device, in eval mode; the model's mode is restored."""
    if len(x) == 0:
        raise ValueError("got 0 images; need at least one")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([fn(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Logits (N, n_classes) on the model's device, in eval mode and batches."""
    return map_batches(model, model, x, batch_size)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of images whose argmax class equals the label."""
    pred = predict_logits(model, x, batch_size).argmax(dim=1)  # (N,)
    return (pred == y.to(pred.device)).float().mean().item()


def confusion_matrix(pred: Tensor, target: Tensor, n_classes: int = 10) -> Tensor:
    """Counts (n_classes, n_classes) int64: rows are true classes, columns predicted ones."""
    index = target.long() * n_classes + pred.long()  # (N,) flat cell index
    return torch.bincount(index, minlength=n_classes * n_classes).view(n_classes, n_classes)
