"""The training loop every image model shares: whole uint8 tensors on the device, index-gathered batches.

No per-item Python and no DataLoader workers: an epoch is a permutation of indices, a batch is
one gather plus a scale to [0, 1] on the training device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from models.common import NonFiniteLoss, check_finite  # noqa: F401  (re-exported for the trainers)

StepFn = Callable[[Tensor, Tensor], dict[str, Tensor]]  # (images in [0, 1], labels) -> stats
MetricsCallback = Callable[[int, dict[str, float]], None]


class ImageFitResult(NamedTuple):
    steps: int
    epochs: int
    images_seen: int  # by this call (a resumed run counts from its checkpoint)


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch (the ragged tail is dropped, as batch norm prefers)."""
    return max(1, n_images // batch_size)


def total_steps(n_images: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """The number of batches a run will train on."""
    steps = epochs * batches_per_epoch(n_images, batch_size)
    return min(steps, max_steps) if max_steps else steps


AfterStep = Callable[[int, Callable[[], dict]], None]  # (step, the loop's position on demand)


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
    after_step: AfterStep | None = None,
    start: dict | None = None,
) -> ImageFitResult:
    """Run `step_fn` over shuffled batches for `epochs` (or `max_steps`); `on_epoch_end(epoch, step)` after each.

    `after_step(step, position)` runs after every step (and after `on_epoch_end` when the step ends an
    epoch); `position()` is where the loop stands: pass it back as `start` to go on from there.
    """
    n = images.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} training images; lower batch_size")
    per_epoch = batches_per_epoch(n, batch_size)
    budget = total_steps(n, batch_size, epochs, max_steps)
    step, epoch, batch, order = 0, 1, 0, None
    if start is not None:
        step, epoch, batch, order = start["step"], start["epoch"], start["batch"], start["order"].to(images.device)
    while step < budget:
        if batch == 0:
            order = torch.randperm(n, device=images.device)
        idx = order[batch * batch_size : (batch + 1) * batch_size]
        x = images[idx].float().div_(255.0)  # (B, 1, H, W) in [0, 1]
        stats = step_fn(x, labels[idx])
        step, batch = step + 1, batch + 1
        check_finite(stats, step)
        if step % log_every == 0 or step == budget:
            on_metrics(step, {k: float(v) for k, v in stats.items()})
        if batch == per_epoch or step == budget:
            if on_epoch_end is not None:
                on_epoch_end(epoch, step)
            epoch, batch = epoch + 1, 0
        if after_step is not None:
            after_step(step, lambda: {"step": step, "epoch": epoch, "batch": batch, "order": order.cpu()})
    first = start["step"] if start is not None else 0
    return ImageFitResult(steps=step, epochs=epoch - 1, images_seen=(step - first) * batch_size)
