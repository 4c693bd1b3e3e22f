"""The training loop every image model shares: whole uint8 tensors on the device, index-gathered batches.

No per-item Python and no DataLoader workers: an epoch is a permutation of indices, a batch is
one gather plus a scale to [0, 1] on the training device.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor

from models.training import Report, Trainer


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch (the ragged tail is dropped, as batch norm prefers)."""
    return max(1, n_images // batch_size)


def total_steps(n_images: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """The number of batches a run will train on."""
    steps = epochs * batches_per_epoch(n_images, batch_size)
    return min(steps, max_steps) if max_steps else steps


class ImageTrainer(Trainer):
    """Shuffled batches of `images` (N, 1, H, W) uint8 and `labels` (N,) for `epochs` (or `max_steps`).

    Subclasses implement `train_batch` (images in [0, 1]) and may report at each epoch's end (`end_of_epoch`).
    """

    unit = "batch"

    def __init__(
        self, images: Tensor, labels: Tensor, batch_size: int, epochs: int, max_steps: int | None, log_every: int = 50
    ) -> None:
        n = images.shape[0]
        if batch_size > n:
            raise ValueError(f"batch_size={batch_size} exceeds the {n} training images; lower batch_size")
        self.images, self.labels, self.batch_size, self.log_every = images, labels, batch_size, log_every
        self.per_epoch = batches_per_epoch(n, batch_size)
        self.budget = total_steps(n, batch_size, epochs, max_steps)
        self.steps, self.epoch, self.batch = 0, 1, 0
        self.order = torch.zeros(0, dtype=torch.long, device=images.device)
        self._ended: int | None = None  # the epoch that the last step finished, until reported

    @abstractmethod
    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """One update on images x (B, 1, H, W) in [0, 1] with labels y (B,); its statistics."""

    def end_of_epoch(self, epoch: int) -> Report:
        """What to record when `epoch` ends (validation, sample grids)."""
        return Report()

    def step(self) -> dict[str, Tensor]:
        if self.batch == 0:
            self.order = torch.randperm(self.images.shape[0], device=self.images.device)
        idx = self.order[self.batch * self.batch_size : (self.batch + 1) * self.batch_size]
        x = self.images[idx].float().div_(255.0)  # (B, 1, H, W) in [0, 1]
        stats = self.train_batch(x, self.labels[idx])
        self.steps, self.batch = self.steps + 1, self.batch + 1
        if self.batch == self.per_epoch or self.steps == self.budget:
            self._ended, self.epoch, self.batch = self.epoch, self.epoch + 1, 0
        return stats

    def reports(self) -> list[Report]:
        if self._ended is None:
            return []
        epoch, self._ended = self._ended, None
        return [self.end_of_epoch(epoch)]

    @property
    def epochs_done(self) -> int:
        return self.epoch - 1

    def loop_state(self) -> dict[str, Any]:
        return {"steps": self.steps, "epoch": self.epoch, "batch": self.batch, "order": self.order.cpu()}

    def load_loop_state(self, state: dict[str, Any]) -> None:
        self.steps, self.epoch, self.batch = state["steps"], state["epoch"], state["batch"]
        self.order = state["order"].to(self.images.device)

    def summary(self, seconds: float, first_step: int) -> dict[str, float]:
        images = (self.steps - first_step) * self.batch_size
        return {
            "train/steps": self.steps,
            "train/epochs": self.epochs_done,
            "train/seconds": seconds,
            "perf/images_per_sec": images / seconds,
        }
