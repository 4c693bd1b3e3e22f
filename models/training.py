"""The trainer interface: one run's training as a step, its position, and the state to save and restore.

rlgen's one training-loop driver runs every trainer (DQN, the image models, the Langevin models, the LMs):
it calls `step()` until `done()`, checks each step's statistics for NaN, averages and logs them every
`log_every` steps, records what `reports()` returns, and checkpoints `state_dict()` so that
`load_state_dict()` continues the run bit for bit. A trainer never touches files, MLflow or signals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn


class Grid(NamedTuple):
    """Images (B, C, H, W) in [0, 1] to show as a grid of `nrow` columns."""

    images: Tensor
    nrow: int = 10


class Report(NamedTuple):
    """What a trainer has to say after a step besides its statistics: metrics and artifacts of this moment."""

    metrics: dict[str, float] = {}
    grids: dict[str, Grid] = {}  # artifact file (samples/epoch_001.png) -> images
    texts: dict[str, str] = {}  # artifact file -> text


class Trainer(ABC):
    """One run's training. Subclasses set `budget` and implement `step`, `modules` and `optimizers`."""

    name: str = "model"  # for messages: the registered model name
    budget: int = 0  # the position at which training ends
    steps: int = 0  # the position: steps taken so far (environment steps for DQN)
    log_every: int = 50  # steps between logged means of the step statistics
    unit: str = "step"  # what a step is, for the learning curve's x axis
    shown: tuple[str, ...] = ()  # metrics on the progress bar
    advice: str = "lower the learning rate"  # what to try when the loss is not finite

    @abstractmethod
    def step(self) -> dict[str, Tensor]:
        """Take one step; its statistics (0-d tensors, not yet synchronised; {} when nothing was learned)."""

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The networks being trained, by name (checkpointed, checked for NaN, compiled on request)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers, by name (checkpointed; a NaN rollback halves their learning rates)."""

    def reports(self) -> list[Report]:
        """After each step: metrics and artifacts to record at the current position (validation, epoch grids)."""
        return []

    def done(self) -> bool:
        """Whether training is over: the budget is spent (or, in subclasses, the run stopped early)."""
        return self.steps >= self.budget

    def buffers(self) -> dict[str, Tensor]:
        """Training tensors beyond the modules (latent vectors, persistent chains), checkpointed and kept."""
        return {}

    def loop_state(self) -> dict[str, Any]:
        """Where the loop stands beyond modules, optimizers and buffers (epoch, permutation, counters)."""
        return {"steps": self.steps}

    def load_loop_state(self, state: dict[str, Any]) -> None:
        """Restore `loop_state()`'s snapshot."""
        self.steps = state["steps"]

    def finish(self) -> None:  # noqa: B027 (a hook: most trainers have nothing to do here)
        """After the last step: keep the best weights, calibrate batch norm, and the like."""

    def summary(self, seconds: float, first_step: int) -> dict[str, float]:
        """The train/* and perf/* figures of the run; `first_step` is where this session started (resume)."""
        return {"train/steps": self.steps, "train/seconds": seconds}

    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-for-bit continuation needs, as tensors and plain data (loads with weights_only)."""
        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "buffers": {k: b.detach().cpu().clone() for k, b in self.buffers().items()},
            "loop": self.loop_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s snapshot in place."""
        for key, module in self.modules().items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, buffer in self.buffers().items():
            buffer.copy_(state["buffers"][key])
        self.load_loop_state(state["loop"])
