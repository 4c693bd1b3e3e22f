"""What trains, evaluates and exports the DQN family: the agent's loop, greedy evaluation, the greedy policy."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models import dqn
from models.common import check_finite
from models.training import Report, Trainer
from rlgen.domains import ENVIRONMENT as DOMAIN
from rlgen.environments import (
    EVAL_WAVE,
    EnvSpec,
    env_settings,
    episode_seeds,
    make_vector_env,
)
from rlgen.export.checked import ExportSpec
from rlgen.families.dqn.config import DQNConfig
from rlgen.families.dqn.validation import Best, Validation
from rlgen.family import Loaded, Panels, Series
from rlgen.plots import histogram, moving_average
from rlgen.tracking.artifacts import log_artifact, log_dict, temp_dir

__all__ = ["DOMAIN", "build", "curves", "evaluate", "export", "trainer"]
log = logging.getLogger(__name__)


def build(cfg: DQNConfig, spec: EnvSpec) -> dict[str, nn.Module]:
    """The Q-network: an MLP for state vectors, a ConvNet for frame stacks."""
    return {"q_network": dqn.build_q_network(spec.obs_shape, spec.n_actions, cfg.hidden, cfg.dueling)}


class DQNTrainer(Trainer):
    """Mnih et al. 2015: epsilon-greedy collection into a replay deque, rounds of TD updates against a target
    network, greedy validation that keeps the best weights and stops once solved, with the solve confirmed on
    `confirm_episodes` further unseen episodes so that "solved" means what the final evaluation will find.

    A step is one vector step (`num_envs` environment steps). The environments cannot be snapshot: a resumed
    run starts new episodes, seeded by where they start.
    """

    unit = "environment step"
    advice = "lower lr or max_grad_norm"
    shown = ("rl/episodic_return", "rl/epsilon", "val/mean_return")

    def __init__(self, cfg: DQNConfig, spec: EnvSpec, q_network: nn.Module, device: torch.device) -> None:
        self.cfg, self.spec, self.device = cfg, spec, device
        self.name, self.budget, self.log_every = cfg.registered_name, cfg.total_steps, cfg.log_every
        self.q_network, self.target_network = q_network, copy.deepcopy(q_network)
        self.optimizer = torch.optim.Adam(q_network.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
        self.memory = dqn.ReplayMemory(cfg.buffer_size, seed=cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.envs = make_vector_env(cfg, cfg.num_envs)
        self.validation = Validation(cfg, spec, device)
        self.episodes = self.updates = 0
        self.n_step = dqn.NStepReturns(cfg.n_step, cfg.gamma, cfg.num_envs) if cfg.n_step > 1 else None
        self.best: Best | None = None
        self.solved_step: int | None = None
        self.solved = False
        self.obs: np.ndarray | None = None  # reset at the first step (after a resume, too)
        self.episode_return = np.zeros(cfg.num_envs)
        self.episode_length = np.zeros(cfg.num_envs, dtype=np.int64)
        self._reports: list[Report] = []

    def step(self) -> dict[str, Tensor]:
        cfg, n = self.cfg, self.cfg.num_envs
        if self.obs is None:
            self.obs, _ = self.envs.reset(seed=[cfg.seed + self.steps + i for i in range(n)])
        epsilon = dqn.linear_epsilon(self.steps, cfg.eps_start, cfg.eps_end, cfg.eps_decay_steps)
        actions = dqn.select_actions(self.q_network, self.obs, epsilon, self.spec.n_actions, self.rng)
        self.obs, rewards, done = dqn.collect(
            self.envs, self.obs, actions, self.memory, self.n_step, cfg.failure_reward
        )
        self.steps += n
        self.episode_return += rewards
        self.episode_length += 1
        for i in np.flatnonzero(done):
            self.episodes += 1
            episode = {
                "rl/episodic_return": float(self.episode_return[i]),
                "rl/episode_length": float(self.episode_length[i]),
                "rl/epsilon": epsilon,
            }
            self._reports.append(Report(episode))
            self.episode_return[i], self.episode_length[i] = 0.0, 0
        stats: dict[str, Tensor] = {}
        if (
            self.steps >= cfg.learning_starts
            and self.steps % cfg.train_every < n
            and len(self.memory) >= cfg.batch_size
        ):
            for _ in range(cfg.gradient_steps):
                batch = self.memory.sample(cfg.batch_size, self.device)
                stats = dqn.td_update(
                    self.q_network,
                    self.target_network,
                    self.optimizer,
                    batch,
                    cfg.gamma,
                    cfg.double_dqn,
                    cfg.max_grad_norm,
                )
                check_finite(stats, self.steps)  # every gradient step, not only the round's last
                self.updates += 1
            stats["rl/epsilon"] = torch.tensor(epsilon)
        if self.steps % cfg.target_update_every < n:
            dqn.soft_update_target(self.target_network, self.q_network, cfg.tau)
        if cfg.eval_every and self.steps % cfg.eval_every < n and self.steps >= cfg.learning_starts:
            self._validate()
        return stats

    def _validate(self) -> None:
        """Validate; keep the best weights; stop once a confirmed solve is in (if configured)."""
        candidate, metrics = self.validation(self.q_network, self.steps)
        self._reports.append(Report(metrics))
        if self.best is None or candidate.rank() >= self.best.rank():
            self.best = candidate
        if candidate.confirmed:
            self.solved_step = self.solved_step or self.steps
            if self.cfg.stop_when_solved:
                log.info("validation %.1f, confirmed, at step %d: stopping", candidate.mean_return, self.steps)
                self.solved = True

    def reports(self) -> list[Report]:
        reports, self._reports = self._reports, []
        return reports

    def done(self) -> bool:
        return self.solved or self.steps >= self.budget

    def modules(self) -> dict[str, nn.Module]:
        return {"q_network": self.q_network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def loop_state(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "episodes": self.episodes,
            "updates": self.updates,
            "solved_step": self.solved_step,
            "solved": self.solved,
            "confirmations": self.validation.confirmations,
            "best": tuple(self.best) if self.best is not None else None,
            "target": self.target_network.state_dict(),
            "memory": self.memory.state_dict(with_transitions=self.cfg.checkpoint_replay),
            "rng": self.rng.bit_generator.state,
        }

    def load_loop_state(self, state: dict[str, Any]) -> None:
        self.steps, self.episodes, self.updates = state["steps"], state["episodes"], state["updates"]
        self.solved_step, self.solved = state["solved_step"], state["solved"]
        self.validation.confirmations = state.get("confirmations", 0)
        best = state["best"]  # (mean return, step, weights[, confirmed]): checkpoints before confirmation had three
        self.best = Best(float(best[0]), int(best[1]), best[2], *best[3:]) if best is not None else None
        self.target_network.load_state_dict(state["target"])
        self.memory.load_state_dict(state["memory"])
        self.rng.bit_generator.state = state["rng"]
        self.obs = None  # new episodes, seeded by where they start
        if self.n_step is not None:  # the unfinished chains belonged to the interrupted episodes
            self.n_step = dqn.NStepReturns(self.cfg.n_step, self.cfg.gamma, self.cfg.num_envs)

    def finish(self) -> None:
        """Keep the best validated weights (or the last), and close the environments."""
        if self.best is not None:
            self.q_network.load_state_dict(self.best.weights)
        self.envs.close()
        self.validation.close()

    def summary(self, seconds: float, first_step: int) -> dict[str, float]:
        figures = {
            "train/steps": self.steps,
            "train/episodes": self.episodes,
            "train/updates": self.updates,
            "train/confirmations": self.validation.confirmations,
            "train/seconds": seconds,
            "perf/steps_per_sec": (self.steps - first_step) / seconds,
        }
        if self.solved_step is not None:
            figures["train/solved_step"] = self.solved_step
        if self.best is not None:
            figures["train/best_step"] = self.best.step
        return figures


def trainer(
    cfg: DQNConfig, spec: EnvSpec, modules: dict[str, nn.Module], device: torch.device, context: None = None
) -> DQNTrainer:
    return DQNTrainer(cfg, spec, modules["q_network"], device)


def curves(history: dict[str, Series]) -> Panels:
    returns = history.get("rl/episodic_return", [])
    return {
        "return": {
            "episode": returns,
            "mean of last 20": moving_average(returns, 20),
            "validation (greedy)": history.get("val/mean_return", []),
        },
        "Huber loss": {"train/loss": history.get("train/loss", [])},
        "epsilon": {"rl/epsilon": history.get("rl/epsilon", [])},
    }


def evaluate(cfg: DQNConfig, spec: EnvSpec, trained: Loaded, context: None, run_id: str) -> dict[str, float]:
    """Greedy returns over `eval_episodes` unseen seeds; their histogram and every return as evaluation/returns.json."""
    q_network = trained.modules["q_network"]
    device = next(q_network.parameters()).device
    envs = make_vector_env(cfg, min(cfg.eval_episodes, EVAL_WAVE))
    seeds = episode_seeds(cfg, "evaluation", cfg.eval_episodes)
    try:
        returns = dqn.greedy_returns(dqn.torch_actor(dqn.GreedyPolicy(q_network), device), envs, seeds)
    finally:
        envs.close()
    threshold = spec.solve_threshold
    solved = threshold is not None and float(returns.mean()) >= threshold
    metrics = {
        "eval/mean_return": float(returns.mean()),
        "eval/std_return": float(returns.std()),
        "eval/min_return": float(returns.min()),
        "eval/max_return": float(returns.max()),
        "eval/episodes": float(len(returns)),
        "eval/solved": float(solved),
    }
    log_dict(
        run_id, {"solve_threshold": threshold, "seeds": seeds, "returns": returns.tolist()}, "evaluation/returns.json"
    )
    with temp_dir() as tmp:
        title = f"Greedy returns over {len(returns)} episodes"
        log_artifact(run_id, histogram(returns, Path(tmp) / "eval_returns.png", title, "return"), "evaluation")
    return metrics


def export(cfg: DQNConfig, spec: EnvSpec, trained: Loaded) -> ExportSpec:
    """The greedy policy: observations -> actions (forward) and Q-values (q_values), actions checked for equality."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.obs_mode == "pixels":
        inputs = torch.randint(0, 256, (64, *spec.obs_shape), dtype=torch.uint8, generator=generator)
    else:
        inputs = torch.randn(64, *spec.obs_shape, generator=generator)
    metadata = {
        "env": env_settings(cfg),
        "obs_shape": list(spec.obs_shape),
        "n_actions": spec.n_actions,
        "solve_threshold": spec.solve_threshold,
    }
    return ExportSpec(
        dqn.GreedyPolicy(trained.modules["q_network"]),
        (inputs,),
        metadata,
        folder="policy",
        stem="policy",
        methods=("q_values", "forward"),
        exact={"forward": "actions"},
    )
