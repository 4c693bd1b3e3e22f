"""The training loop every image model shares: whole uint8 tensors on the device, index-gathered batches.

No per-item Python and no DataLoader workers: an epoch is a permutation of indices, a batch is
one gather plus a scale to [0, 1] on the training device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Tensor], dict[str, Tensor]]  # (images in [0, 1], labels) -> stats
MetricsCallback = Callable[[int, dict[str, float]], None]


class NonFiniteLoss(RuntimeError):
    """A training statistic (loss, gradient norm, ...) became NaN or infinite; the message names it and the step."""


def check_finite(stats: dict[str, Tensor], step: int) -> None:
    """Raise NonFiniteLoss naming the first non-finite statistic of `step`."""
    values = torch.stack([v.detach().float().reshape(()) for v in stats.values()])
    if not bool(torch.isfinite(values).all()):
        bad = {k: float(v) for k, v in stats.items() if not torch.isfinite(v).all()}
        raise NonFiniteLoss(f"non-finite {', '.join(f'{k} = {v}' for k, v in bad.items())} at step {step}")


class ImageFitResult(NamedTuple):
    steps: int
    epochs: int
    images_seen: int


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch (the ragged tail is dropped, as batch norm prefers)."""
    return max(1, n_images // batch_size)


def total_steps(n_images: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """The number of batches a run will train on."""
    steps = epochs * batches_per_epoch(n_images, batch_size)
    return min(steps, max_steps) if max_steps else steps


def fit_images(
    step_fn: StepFn,
    images: Tensor,  # (N, 1, H, W) uint8, already on the training device
    labels: Tensor,  # (N,) int64, on the same device
    batch_size: int,
    epochs: int,
    on_metrics: MetricsCallback,
    on_epoch_end: Callable[[int, int], None] | None = None,
    max_steps: int | None = None,
    log_every: int = 50,
) -> ImageFitResult:
    """Run `step_fn` over shuffled batches for `epochs` (or `max_steps`); `on_epoch_end(epoch, step)` after each."""
    n = images.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} training images; lower batch_size")
    per_epoch = batches_per_epoch(n, batch_size)
    budget = total_steps(n, batch_size, epochs, max_steps)
    step = epoch = 0
    for epoch in range(1, math.ceil(budget / per_epoch) + 1):
        order = torch.randperm(n, device=images.device)
        for b in range(per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = images[idx].float().div_(255.0)  # (B, 1, H, W) in [0, 1]
            stats = step_fn(x, labels[idx])
            step += 1
            check_finite(stats, step)
            if step % log_every == 0 or step == budget:
                on_metrics(step, {k: float(v) for k, v in stats.items()})
            if step >= budget:
                break
        if on_epoch_end is not None:
            on_epoch_end(epoch, step)
        if step >= budget:
            break
    return ImageFitResult(steps=step, epochs=epoch, images_seen=step * batch_size)
