"""The agent learns CartPole on a short budget, and the same seed gives the same run on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import dqn
from models.common import seed_everything
from rlgen.environments import describe_env, episode_seeds, make_vector_env
from rlgen.families.dqn import DQNConfig
from rlgen.families.dqn.train import DQNTrainer, build


def train(cfg: DQNConfig) -> tuple[torch.nn.Module, list[float], tuple]:
    """The flow's trainer, stepped to its end without the driver: its network, episode returns and counters."""
    seed_everything(cfg.seed)
    spec = describe_env(cfg)
    q_network = build(cfg, spec)["q_network"]
    trainer = DQNTrainer(cfg, spec, q_network, torch.device("cpu"))
    returns: list[float] = []
    while not trainer.done():
        trainer.step()
        returns += [r.metrics["rl/episodic_return"] for r in trainer.reports() if "rl/episodic_return" in r.metrics]
    trainer.finish()
    best = trainer.best[:2] if trainer.best else None
    return q_network, returns, (trainer.steps, trainer.episodes, trainer.updates, trainer.solved_step, best)


@pytest.mark.slow
def test_cartpole_improves_clearly_over_a_random_policy() -> None:
    cfg = DQNConfig(seed=3, device="cpu", total_steps=15_000, eval_every=2_500, val_episodes=10)
    q_network, _, (steps, *_) = train(cfg)
    envs = make_vector_env(cfg, 20)
    seeds = episode_seeds(cfg, "evaluation", 20)
    trained = dqn.greedy_returns(dqn.torch_actor(dqn.GreedyPolicy(q_network), torch.device("cpu")), envs, seeds)
    rng = np.random.default_rng(0)
    random = dqn.greedy_returns(lambda obs: rng.integers(2, size=len(obs)), envs, seeds)
    assert steps <= 15_000
    assert random.mean() < 30  # CartPole's random policy lasts about 22 steps
    assert trained.mean() >= 100 and trained.mean() >= 4 * random.mean(), (trained.mean(), random.mean())


def test_same_seed_same_run_on_cpu() -> None:
    """Bitwise: one process, the same thread count, and seeded torch, numpy, python and env RNGs."""
    cfg = DQNConfig(
        seed=5,
        device="cpu",
        total_steps=1_500,
        learning_starts=300,
        train_every=100,
        gradient_steps=20,
        eval_every=500,
        val_episodes=3,
    )
    first, second = train(cfg), train(cfg)
    assert first[1] == second[1] and len(first[1]) > 10
    assert first[2] == second[2]
    for a, b in zip(first[0].state_dict().values(), second[0].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = train(cfg.model_copy(update={"seed": 6}))
    assert other[1] != first[1]
