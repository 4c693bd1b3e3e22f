"""The training loop every image model shares: whole uint8 tensors on the device, index-gathered batches.

No per-item Python and no DataLoader workers: an epoch is a permutation of indices, a batch is
one gather plus a scale to [0, 1] on the training device.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from models.training import Report, Trainer

Judge = Callable[[Tensor], float]  # images (N, 1, H, W) in [0, 1] -> a distance (lower is better): FID-LeNet


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch (the ragged tail is dropped, as batch norm prefers)."""
    return max(1, n_images // batch_size)


def total_steps(n_images: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """The number of batches a run will train on."""
    steps = epochs * batches_per_epoch(n_images, batch_size)
    return min(steps, max_steps) if max_steps else steps


class Selection(NamedTuple):
    """Score prior samples on held-out data every `every` epochs (and after the last), and keep the best epoch's
    weights (`keep_best`) or the last ones."""

    judge: Judge  # validation FID-LeNet: never the test split
    every: int  # epochs between scores (> 0)
    samples: int  # generated images per score
    seed: int  # the samples' seed, the same every epoch (and the same as the final evaluation's)
    keep_best: bool


class ImageTrainer(Trainer):
    """Shuffled batches of `images` (N, 1, H, W) uint8 and `labels` (N,) for `epochs` (or `max_steps`).

    Subclasses implement `train_batch` (images in [0, 1]) and may report at each epoch's end (`end_of_epoch`).
    With a `selection`, they implement `prior_samples` too: every `selection.every` epochs (and after the last) the
    samples' validation FID-LeNet is reported as `val/fid_lenet`, and with `keep_best` the weights of the epoch
    that scored best are copied (kept in the checkpoint) and put back by `finish()`.
    """

    unit = "batch"

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        epochs: int,
        max_steps: int | None,
        log_every: int = 50,
        selection: Selection | None = None,
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
        self.selection = selection
        self.best: dict[str, Any] = {}  # {"epoch", "fid", "modules"}: the best-scored epoch (CPU copies of weights)

    @abstractmethod
    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """One update on images x (B, 1, H, W) in [0, 1] with labels y (B,); its statistics."""

    def end_of_epoch(self, epoch: int) -> Report:
        """What to record when `epoch` ends (validation, sample grids)."""
        return Report()

    def prior_samples(self, n: int) -> Tensor:
        """`n` samples (n, 1, H, W) in [0, 1] drawn as the final evaluation draws them (eval mode, batch norm as
        exported), leaving the training state as it was; needed with a `selection`."""
        raise NotImplementedError(f"{type(self).__name__} has a selection but no prior_samples")

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
        report = self.end_of_epoch(epoch)
        return [report._replace(metrics={**report.metrics, **self.score(epoch)})]

    def score(self, epoch: int) -> dict[str, float]:
        """The validation score of `epoch`'s samples, when it is due; the best epoch's weights copied."""
        s = self.selection
        if s is None or (epoch % s.every and self.steps < self.budget):
            return {}
        started, device = time.perf_counter(), self.images.device
        # the training RNG stream is untouched, so the curve does not change training; the same seed every epoch
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(s.seed)
            fid = s.judge(self.prior_samples(s.samples))
        if math.isfinite(fid) and (not self.best or fid < self.best["fid"]):  # the first of equal scores stays
            copies = {
                k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for k, m in self.modules().items()
            }
            self.best = {"epoch": epoch, "fid": fid, "modules": copies if s.keep_best else {}}
        return {"val/fid_lenet": fid, "perf/val_fid_seconds": time.perf_counter() - started}

    def finish(self) -> None:
        """Put back the best-scored epoch's weights when the selection keeps the best (subclasses then calibrate)."""
        if self.selection is not None and self.selection.keep_best and self.best:
            for key, module in self.modules().items():
                module.load_state_dict(self.best["modules"][key])

    @property
    def kept_epoch(self) -> int:
        """The epoch whose weights training ends with."""
        keep_best = self.selection is not None and self.selection.keep_best and self.best
        return int(self.best["epoch"]) if keep_best else self.epochs_done

    @property
    def epochs_done(self) -> int:
        return self.epoch - 1

    def loop_state(self) -> dict[str, Any]:
        loop = {"steps": self.steps, "epoch": self.epoch, "batch": self.batch, "order": self.order.cpu()}
        return loop | ({"best": self.best} if self.selection is not None else {})

    def load_loop_state(self, state: dict[str, Any]) -> None:
        self.steps, self.epoch, self.batch = state["steps"], state["epoch"], state["batch"]
        self.order = state["order"].to(self.images.device)
        if self.selection is not None:
            self.best = state.get("best", {})

    def summary(self, seconds: float, first_step: int) -> dict[str, float]:
        images = (self.steps - first_step) * self.batch_size
        summary = {
            "train/steps": self.steps,
            "train/epochs": self.epochs_done,
            "train/seconds": seconds,
            "perf/images_per_sec": images / seconds,
        }
        if self.selection is not None and self.best:
            summary |= {"train/kept_epoch": self.kept_epoch, "val/fid_lenet_best": self.best["fid"]}
        return summary
