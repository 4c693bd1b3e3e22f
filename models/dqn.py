"""Deep Q-Network (Mnih et al. 2015, "Human-level control through deep RL"), Double DQN optional.

Pure torch and numpy: the environment comes in as a Gymnasium vector env with same-step autoreset,
and metrics leave through an `on_metrics(step, metrics)` callback.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from gymnasium.vector import SyncVectorEnv as VectorEnv

log = logging.getLogger(__name__)

MetricsCallback = Callable[[int, dict[str, float]], None]


# --------------------------------------------------------------------------- networks


class QNetwork(nn.Module):
    """MLP from a state vector to one Q-value per action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_actions),
        )

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.float())  # (B, A)


class ConvQNetwork(nn.Module):
    """Small ConvNet from a stack of uint8 grey frames (B, K, H, W) to Q-values."""

    def __init__(self, frames: int, height: int, width: int, n_actions: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(frames, 16, kernel_size=5, stride=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=5, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_features = self.features(torch.zeros(1, frames, height, width)).shape[1]
        self.head = nn.Sequential(nn.Linear(n_features, 256), nn.ReLU(), nn.Linear(256, n_actions))

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.features(obs.float() / 255.0))  # (B, A)


def build_q_network(obs_shape: tuple[int, ...], n_actions: int, hidden: int) -> nn.Module:
    """The MLP for vector observations, the ConvNet for (frames, height, width) images."""
    if len(obs_shape) == 1:
        return QNetwork(obs_shape[0], n_actions, hidden)
    if len(obs_shape) == 3:
        return ConvQNetwork(*obs_shape, n_actions=n_actions)
    raise ValueError(f"observations of shape {obs_shape} are neither vectors nor frame stacks")


class GreedyPolicy(nn.Module):
    """What gets exported: the Q-network plus argmax, so a user needs no agent code."""

    def __init__(self, q_network: nn.Module) -> None:
        super().__init__()
        self.q_network = q_network

    def forward(self, obs: Tensor) -> Tensor:
        return self.q_network(obs).argmax(dim=1)  # (B,)

    @torch.jit.export
    def q_values(self, obs: Tensor) -> Tensor:
        return self.q_network(obs)  # (B, A)


# --------------------------------------------------------------------------- replay and exploration


class Transition(NamedTuple):
    obs: np.ndarray
    action: int
    reward: float
    next_obs: np.ndarray
    terminated: bool  # true termination only: a time-limit truncation still bootstraps


class Batch(NamedTuple):
    obs: Tensor  # (B, *obs_shape)
    action: Tensor  # (B,) int64
    reward: Tensor  # (B,) float32
    next_obs: Tensor  # (B, *obs_shape)
    terminated: Tensor  # (B,) float32, 1.0 where the episode terminated


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
            obs, action, reward, next_obs, terminated = zip(*self.memory, strict=True)
            state["transitions"] = {
                "obs": torch.as_tensor(np.stack(obs)),
                "action": torch.as_tensor(action),
                "reward": torch.as_tensor(reward),
                "next_obs": torch.as_tensor(np.stack(next_obs)),
                "terminated": torch.as_tensor(terminated),
            }
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s snapshot (the memory starts empty if it holds no transitions)."""
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.memory.clear()
        if columns := state.get("transitions"):
            for row in zip(
                columns["obs"].numpy(),
                columns["action"].tolist(),
                columns["reward"].tolist(),
                columns["next_obs"].numpy(),
                columns["terminated"].tolist(),
                strict=True,
            ):
                self.memory.append(Transition(*row))

    def sample(self, batch_size: int, device: torch.device) -> Batch:
        """A uniform minibatch without replacement, transposed from transitions to columns."""
        transitions = self.rng.sample(self.memory, batch_size)
        obs, action, reward, next_obs, terminated = zip(*transitions, strict=True)
        return Batch(
            obs=torch.as_tensor(np.stack(obs), device=device),
            action=torch.as_tensor(action, dtype=torch.int64, device=device),
            reward=torch.as_tensor(reward, dtype=torch.float32, device=device),
            next_obs=torch.as_tensor(np.stack(next_obs), device=device),
            terminated=torch.as_tensor(terminated, dtype=torch.float32, device=device),
        )


def linear_epsilon(step: int, start: float, end: float, decay_steps: int) -> float:
    """Epsilon falling linearly from `start` to `end` over `decay_steps`, then flat."""
    fraction = min(step / decay_steps, 1.0)
    return start + fraction * (end - start)


def select_actions(
    q_network: nn.Module, obs: np.ndarray, epsilon: float, n_actions: int, rng: np.random.Generator
) -> np.ndarray:
    """Epsilon-greedy: a uniformly random action with probability epsilon, else the argmax."""
    device = next(q_network.parameters()).device
    with torch.no_grad():
        greedy = q_network(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()
    explore = rng.random(len(obs)) < epsilon
    return np.where(explore, rng.integers(n_actions, size=len(obs)), greedy)


def collect(
    envs: VectorEnv, obs: np.ndarray, actions: np.ndarray, memory: ReplayMemory
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step every env once and store the transitions; returns (next_obs, rewards, done).

    With same-step autoreset, next_obs of a finished env is already the first observation of its
    next episode; the true last observation is in infos["final_obs"]. Only `terminated` stops
    bootstrapping: an episode cut by a time limit (`truncated`) still had a future.
    """
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    done = terminated | truncated
    for i in range(len(obs)):
        last = infos["final_obs"][i] if done[i] else next_obs[i]
        memory.push(Transition(obs[i], int(actions[i]), float(rewards[i]), last, bool(terminated[i])))
    return next_obs, rewards, done


# --------------------------------------------------------------------------- updates


def td_target(
    reward: Tensor,
    terminated: Tensor,
    next_q_target: Tensor,
    gamma: float,
    next_q_online: Tensor | None = None,
) -> Tensor:
    """r + gamma * (1 - terminated) * Q_target(s', a*), a* = argmax of Q_target (DQN) or Q_online (Double DQN)."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)  # (B, 1)
        next_value = next_q_target.gather(1, best).squeeze(1)
    return reward + gamma * (1.0 - terminated) * next_value  # (B,)


def td_update(
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    gamma: float,
    double_dqn: bool,
    max_grad_norm: float,
) -> dict[str, Tensor]:
    """One gradient step on the Huber loss between Q(s, a) and the TD target."""
    with torch.no_grad():
        next_q_target = target_network(batch.next_obs)
        next_q_online = q_network(batch.next_obs) if double_dqn else None
        target = td_target(batch.reward, batch.terminated, next_q_target, gamma, next_q_online)
    q_taken = q_network(batch.obs).gather(1, batch.action.unsqueeze(1)).squeeze(1)  # (B,)
    loss = F.smooth_l1_loss(q_taken, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(q_network.parameters(), max_grad_norm)
    optimizer.step()
    return {"train/loss": loss.detach(), "train/q_mean": q_taken.detach().mean(), "train/grad_norm": grad_norm}


@torch.no_grad()
def soft_update_target(target_network: nn.Module, q_network: nn.Module, tau: float) -> None:
    """theta_target <- tau * theta + (1 - tau) * theta_target; tau = 1 copies."""
    for target_param, param in zip(target_network.parameters(), q_network.parameters(), strict=True):
        target_param.lerp_(param, tau)


# --------------------------------------------------------------------------- evaluation


def greedy_returns(act: Callable[[np.ndarray], np.ndarray], envs: VectorEnv, seeds: list[int]) -> np.ndarray:
    """Undiscounted return of one episode per seed, played by `act` in waves of `envs.num_envs`.

    `envs` must autoreset on the same step; an env that finished its episode keeps stepping until
    the wave ends, but its rewards no longer count.
    """
    returns: list[float] = []
    n = envs.num_envs
    for start in range(0, len(seeds), n):
        wave = seeds[start : start + n]
        wave_seeds: list[int | None] = [*wave, *[wave[-1]] * (n - len(wave))]  # pad: extra envs play, are not counted
        obs, _ = envs.reset(seed=wave_seeds)
        total = np.zeros(n)
        running = np.zeros(n, dtype=bool)
        running[: len(wave)] = True
        while running.any():
            obs, rewards, terminated, truncated, _ = envs.step(act(obs))
            total += np.where(running, rewards, 0.0)
            running &= ~(terminated | truncated)
        returns.extend(total[: len(wave)].tolist())
    return np.asarray(returns)


def torch_actor(policy: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a module mapping observations to actions (eager or TorchScript) for `greedy_returns`."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy(torch.as_tensor(obs, device=device)).cpu().numpy()

    return act
