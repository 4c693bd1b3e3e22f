"""Deep Q-Network (Mnih et al. 2015, "Human-level control through deep RL"), Double DQN optional.

Pure torch and numpy: the environment comes in as a Gymnasium vector env with same-step autoreset,
and metrics leave through an `on_metrics(step, metrics)` callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.replay import Batch, NStepReturns, ReplayMemory, Transition  # replay lives beside, in models.replay

if TYPE_CHECKING:
    from gymnasium.vector import SyncVectorEnv as VectorEnv

log = logging.getLogger(__name__)

MetricsCallback = Callable[[int, dict[str, float]], None]


# --------------------------------------------------------------------------- networks


class DuelingHead(nn.Module):
    """Q = V + A - mean(A) from shared features (Wang et al. 2016, "Dueling Network Architectures", eq. 9)."""

    def __init__(self, n_features: int, n_actions: int) -> None:
        super().__init__()
        self.value = nn.Linear(n_features, 1)
        self.advantage = nn.Linear(n_features, n_actions)

    def forward(self, features: Tensor) -> Tensor:
        advantage = self.advantage(features)  # (B, A)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)  # (B, A)


def q_head(n_features: int, n_actions: int, dueling: bool) -> nn.Module:
    """The last layer: one linear map to Q-values, or a dueling value-and-advantage pair."""
    return DuelingHead(n_features, n_actions) if dueling else nn.Linear(n_features, n_actions)


class QNetwork(nn.Module):
    """MLP from a state vector to one Q-value per action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 256, dueling: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            q_head(hidden, n_actions, dueling),
        )

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.float())  # (B, A)


class ConvQNetwork(nn.Module):
    """Small ConvNet from a stack of uint8 grey frames (B, K, H, W) to Q-values."""

    def __init__(self, frames: int, height: int, width: int, n_actions: int, dueling: bool = False) -> None:
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
        self.head = nn.Sequential(nn.Linear(n_features, 256), nn.ReLU(), q_head(256, n_actions, dueling))

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.features(obs.float() / 255.0))  # (B, A)


def build_q_network(obs_shape: tuple[int, ...], n_actions: int, hidden: int, dueling: bool = False) -> nn.Module:
    """The MLP for vector observations, the ConvNet for (frames, height, width) images."""
    if len(obs_shape) == 1:
        return QNetwork(obs_shape[0], n_actions, hidden, dueling)
    if len(obs_shape) == 3:
        return ConvQNetwork(*obs_shape, n_actions=n_actions, dueling=dueling)
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


# --------------------------------------------------------------------------- exploration and collection


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
    envs: VectorEnv,
    obs: np.ndarray,
    actions: np.ndarray,
    memory: ReplayMemory,
    n_step: NStepReturns | None = None,
    failure_reward: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step every env once and store the transitions; returns (next_obs, rewards, done).

    With same-step autoreset, next_obs of a finished env is already the first observation of its
    next episode; the true last observation is in infos["final_obs"]. Only `terminated` stops
    bootstrapping: an episode cut by a time limit (`truncated`) still had a future. `failure_reward`
    is added to the stored reward of a terminating step (the returned rewards are the environment's).
    """
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    done = terminated | truncated
    for i in range(len(obs)):
        last = infos["final_obs"][i] if done[i] else next_obs[i]
        reward = float(rewards[i]) + (failure_reward if terminated[i] else 0.0)
        transition = Transition(obs[i], int(actions[i]), reward, last, bool(terminated[i]))
        for ready in n_step.push(i, transition, bool(done[i])) if n_step else [transition]:
            memory.push(ready)
    return next_obs, rewards, done


# --------------------------------------------------------------------------- updates


def td_target(
    reward: Tensor,
    terminated: Tensor,
    next_q_target: Tensor,
    gamma: float,
    next_q_online: Tensor | None = None,
    steps: Tensor | None = None,
) -> Tensor:
    """r + gamma^n * (1 - terminated) * Q_target(s', a*), a* = argmax of Q_target (DQN) or Q_online (Double DQN).

    n is 1, or each row's `steps` for n-step returns (r then sums n discounted rewards).
    """
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)  # (B, 1)
        next_value = next_q_target.gather(1, best).squeeze(1)
    discount = gamma if steps is None else torch.pow(gamma, steps)  # (B,)
    return reward + discount * (1.0 - terminated) * next_value  # (B,)


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
        target = td_target(batch.reward, batch.terminated, next_q_target, gamma, next_q_online, batch.steps)
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
