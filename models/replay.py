"""Experience replay for DQN: transitions, a `deque` memory with seeded uniform sampling, n-step returns.

Pure torch and numpy.
"""

from __future__ import annotations

import random
from collections import deque
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class Transition(NamedTuple):
    obs: np.ndarray
    action: int
    reward: float  # with n-step returns, the discounted sum of `steps` rewards
    next_obs: np.ndarray  # the observation `steps` steps later, bootstrapped from
    terminated: bool  # true termination only: a time-limit truncation still bootstraps
    steps: int = 1  # rewards summed; the bootstrap is discounted by gamma ** steps


class Batch(NamedTuple):
    obs: Tensor  # (B, *obs_shape)
    action: Tensor  # (B,) int64
    reward: Tensor  # (B,) float32
    next_obs: Tensor  # (B, *obs_shape)
    terminated: Tensor  # (B,) float32, 1.0 where the episode terminated
    steps: Tensor | None = None  # (B,) float32, rewards summed per row; None: one each


class NStepReturns:
    """Turns each environment's one-step transitions into n-step ones (Sutton 1988; Hessel et al. 2018, sec. 3).

    A transition leaves once n rewards follow it, or when its episode ends: then every pending one leaves, each
    summing the rewards to the end and bootstrapping (unless terminated) from the episode's last observation.
    """

    def __init__(self, n: int, gamma: float, num_envs: int) -> None:
        self.n, self.gamma = n, gamma
        self.pending: list[deque[Transition]] = [deque() for _ in range(num_envs)]

    def push(self, env: int, transition: Transition, done: bool) -> list[Transition]:
        """Add env's next one-step transition; returns the n-step transitions now complete."""
        pending = self.pending[env]
        pending.append(transition)
        if done:
            ready = [self._combine(list(pending)[k:]) for k in range(len(pending))]
            pending.clear()
            return ready
        if len(pending) == self.n:
            ready = [self._combine(list(pending))]
            pending.popleft()
            return ready
        return []

    def _combine(self, chain: list[Transition]) -> Transition:
        reward = sum(self.gamma**k * t.reward for k, t in enumerate(chain))
        last = chain[-1]
        return Transition(chain[0].obs, chain[0].action, float(reward), last.next_obs, last.terminated, len(chain))


class ReplayMemory:
    """Experience replay in a `deque(maxlen=capacity)`: pushing onto a full memory drops the oldest."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.memory: deque[Transition] = deque(maxlen=capacity)
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.memory)

    def push(self, transition: Transition) -> None:
        """Store one transition."""
        self.memory.append(transition)

    def state_dict(self, with_transitions: bool) -> dict:
        """The sampling RNG, and the transitions as stacked tensors when `with_transitions` (large for pixels)."""
        state: dict = {"rng": self.rng.getstate()}
        if with_transitions and self.memory:
            obs, action, reward, next_obs, terminated, steps = zip(*self.memory, strict=True)
            state["transitions"] = {
                "obs": torch.as_tensor(np.stack(obs)),
                "action": torch.as_tensor(action),
                "reward": torch.as_tensor(reward),
                "next_obs": torch.as_tensor(np.stack(next_obs)),
                "terminated": torch.as_tensor(terminated),
                "steps": torch.as_tensor(steps),
            }
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s snapshot (the memory starts empty if it holds no transitions)."""
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.memory.clear()
        if columns := state.get("transitions"):
            steps = columns["steps"].tolist() if "steps" in columns else [1] * len(columns["action"])  # one-step
            for row in zip(
                columns["obs"].numpy(),
                columns["action"].tolist(),
                columns["reward"].tolist(),
                columns["next_obs"].numpy(),
                columns["terminated"].tolist(),
                steps,
                strict=True,
            ):
                self.memory.append(Transition(*row))

    def sample(self, batch_size: int, device: torch.device) -> Batch:
        """A uniform minibatch without replacement, transposed from transitions to columns."""
        transitions = self.rng.sample(self.memory, batch_size)
        obs, action, reward, next_obs, terminated, steps = zip(*transitions, strict=True)
        return Batch(
            obs=torch.as_tensor(np.stack(obs), device=device),
            action=torch.as_tensor(action, dtype=torch.int64, device=device),
            reward=torch.as_tensor(reward, dtype=torch.float32, device=device),
            next_obs=torch.as_tensor(np.stack(next_obs), device=device),
            terminated=torch.as_tensor(terminated, dtype=torch.float32, device=device),
            steps=torch.as_tensor(steps, dtype=torch.float32, device=device),
        )
