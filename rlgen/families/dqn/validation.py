"""DQN's validation during training: greedy episodes on validation seeds, and the confirmation of a solve."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from models import dqn
from rlgen.environments import EVAL_WAVE, EnvSpec, episode_seeds, make_vector_env
from rlgen.families.dqn.config import DQNConfig

if TYPE_CHECKING:
    from gymnasium.vector import SyncVectorEnv as VectorEnv


class Best(NamedTuple):
    """A validated policy: a confirmed solve ranks above any unconfirmed one, then the higher mean return."""

    mean_return: float
    step: int
    weights: dict[str, Tensor]
    confirmed: bool = False  # checkpoints written before confirmation existed hold the first three

    def rank(self) -> tuple[bool, float]:
        return self.confirmed, self.mean_return


class Validation:
    """Greedy returns on `val_episodes` validation seeds; when they reach the solve threshold, `confirm_episodes`
    more on seeds no earlier confirmation used, so that "solved" is what a 100-episode evaluation will find."""

    def __init__(self, cfg: DQNConfig, spec: EnvSpec, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.threshold = math.inf if spec.solve_threshold is None else spec.solve_threshold
        self.envs = make_vector_env(cfg, min(cfg.val_episodes, EVAL_WAVE))
        self.seeds = episode_seeds(cfg, "validation", cfg.val_episodes)
        self.confirm_envs: VectorEnv | None = None  # made at the first confirmation
        self.confirmations = 0  # checkpointed: a resumed run confirms on fresh seeds too

    def __call__(self, q_network: nn.Module, step: int) -> tuple[Best, dict[str, float]]:
        """Validate `q_network` (left in train mode); its Best record and the val/ metrics."""
        q_network.eval()
        actor = dqn.torch_actor(dqn.GreedyPolicy(q_network), self.device)
        mean_return = float(dqn.greedy_returns(actor, self.envs, self.seeds).mean())
        metrics = {"val/mean_return": mean_return}
        confirmed = mean_return >= self.threshold
        if confirmed and (n := self.cfg.confirm_episodes):
            if self.confirm_envs is None:
                self.confirm_envs = make_vector_env(self.cfg, min(n, EVAL_WAVE))
            seeds = episode_seeds(self.cfg, "confirmation", n * (self.confirmations + 1))[-n:]
            self.confirmations += 1
            metrics["val/confirm_mean_return"] = confirm = float(
                dqn.greedy_returns(actor, self.confirm_envs, seeds).mean()
            )
            confirmed = confirm >= self.threshold
        q_network.train()
        return Best(mean_return, step, {k: v.clone() for k, v in q_network.state_dict().items()}, confirmed), metrics

    def close(self) -> None:
        self.envs.close()
        if self.confirm_envs is not None:
            self.confirm_envs.close()
