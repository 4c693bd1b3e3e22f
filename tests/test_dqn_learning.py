"""The agent learns CartPole on a short budget, and the same seed gives the same run on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import dqn
from models.common import seed_everything
from rlgen.config import DQNConfig
from tasks.envs import episode_seeds, make_vector_env


def train(cfg: DQNConfig) -> tuple[torch.nn.Module, list[float], dqn.FitResult]:
    seed_everything(cfg.seed)
    q_network = dqn.build_q_network((4,), 2, cfg.hidden)
    envs, val_envs = make_vector_env(cfg, 1), make_vector_env(cfg, cfg.val_episodes)
    val_seeds = episode_seeds(cfg, "validation", cfg.val_episodes)

    def validate(network: torch.nn.Module) -> float:
        return float(dqn.greedy_returns(dqn.torch_actor(dqn.GreedyPolicy(network), torch.device("cpu")), val_envs, val_seeds).mean())

    returns: list[float] = []
    on_metrics = lambda step, m: returns.append(m["rl/episodic_return"]) if "rl/episodic_return" in m else None  # noqa: E731
    result = dqn.fit(cfg, envs, q_network, torch.device("cpu"), on_metrics, validate, 475.0)
    return q_network, returns, result


@pytest.mark.slow
def test_cartpole_improves_clearly_over_a_random_policy() -> None:
    cfg = DQNConfig(seed=3, device="cpu", total_steps=15_000, eval_every=2_500, val_episodes=10)
    q_network, _, result = train(cfg)
    envs = make_vector_env(cfg, 20)
    seeds = episode_seeds(cfg, "evaluation", 20)
    trained = dqn.greedy_returns(dqn.torch_actor(dqn.GreedyPolicy(q_network), torch.device("cpu")), envs, seeds)
    rng = np.random.default_rng(0)
    random = dqn.greedy_returns(lambda obs: rng.integers(2, size=len(obs)), envs, seeds)
    assert result.steps <= 15_000
    assert random.mean() < 30  # CartPole's random policy lasts about 22 steps
    assert trained.mean() >= 100 and trained.mean() >= 4 * random.mean(), (trained.mean(), random.mean())


def test_same_seed_same_run_on_cpu() -> None:
    """Bitwise: one process, the same thread count, and seeded torch, numpy, python and env RNGs."""
    cfg = DQNConfig(seed=5, device="cpu", total_steps=1_500, learning_starts=300, train_every=100, gradient_steps=20, eval_every=500, val_episodes=3)
    first, second = train(cfg), train(cfg)
    assert first[1] == second[1] and len(first[1]) > 10
    assert first[2] == second[2]
    for a, b in zip(first[0].state_dict().values(), second[0].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = train(cfg.model_copy(update={"seed": 6}))
    assert other[1] != first[1]
