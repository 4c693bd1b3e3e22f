"""Configuration of the DQN family: environment, observation mode, agent and budget."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from rlgen.config.base import TrainConfig, depends


def by_mode(state: Any, pixels: Any, description: str, **constraints: Any) -> Any:
    """A key whose default depends on obs_mode: learning from frames renders every step and trains a ConvNet, so it
    takes fewer, cheaper updates per step and a slower schedule (docs/models/dqn.md, "Pixels")."""
    return depends("obs_mode", {"state": state, "pixels": pixels}, description, **constraints)


class DQNConfig(TrainConfig):
    """DQN on a Gymnasium environment with discrete actions.

    The defaults start from RL Baselines3 Zoo's tuned CartPole-v1 settings (lr 2.3e-3, epsilon to 0.04 over 8k
    steps, the target network copied every 256 steps) and add what measured best on tuning seeds 101-110
    (benchmarks.dqn_options): 3-step returns, dueling heads, Double DQN, one gradient step per environment step
    (64 every 64), validation every 1,000 steps, a solve confirmed on 100 fresh episodes; see docs/models/dqn.md.
    """

    family: ClassVar[str] = "dqn"

    env_id: str = Field("CartPole-v1", description="Gymnasium id; discrete actions, Box observations.")
    obs_mode: Literal["state", "pixels"] = Field(
        "state", description="state: the observation vector; pixels: rendered, downsampled frames."
    )
    frame_stack: int = Field(2, ge=1, le=8, description="Frames stacked per observation (pixels).")
    pixel_height: int = Field(
        24, ge=8, le=256, description="Frame height after downsampling (pixels): 24 rows of 10 in CartPole's band."
    )
    pixel_width: int = Field(60, ge=8, le=256, description="Frame width after downsampling (pixels).")
    pixel_top: float | None = depends(
        "env_id",
        {"CartPole-v1": 0.3},
        "Top of the band of rows kept from each frame, as a fraction of its height (pixels); None: 0. CartPole "
        "draws its cart and pole between 0.4 and 0.8 of the frame, whatever the state.",
        ge=0.0,
        lt=1.0,
    )
    pixel_bottom: float | None = depends(
        "env_id",
        {"CartPole-v1": 0.9},
        "Bottom of the band of rows kept from each frame, as a fraction of its height (pixels); None: 1.",
        gt=0.0,
        le=1.0,
    )
    num_envs: int = Field(1, ge=1, le=256, description="Parallel training environments.")

    total_steps: int = Field(50_000, gt=0, description="Budget in environment steps (all envs together).")
    learning_starts: int = by_mode(1_000, 5_000, "Random-policy steps before the first update.", ge=0)
    buffer_size: int = Field(100_000, gt=0, description="Replay memory capacity; the oldest drop out.")
    checkpoint_every: int = Field(
        5_000,
        ge=0,
        description="Write a resumable checkpoint every N environment steps (0: only when stopped by Ctrl-C or "
        "SIGTERM).",
    )
    checkpoint_replay: bool = Field(
        False,
        description="Put the replay memory in checkpoints (large for pixels); without it a resumed run refills it.",
    )
    batch_size: int = by_mode(64, 32, "Transitions per gradient step.", gt=0)
    train_every: int = by_mode(64, 4, "Environment steps between rounds of updates.", gt=0)
    gradient_steps: int = by_mode(64, 1, "Gradient steps per round of updates.", gt=0)
    gamma: float = Field(0.99, gt=0.0, le=1.0, description="Discount factor, in (0, 1].")
    lr: float = by_mode(2.3e-3, 2.5e-4, "Adam learning rate.", gt=0.0)
    hidden: int = Field(256, gt=0, description="Width of the Q-network's hidden layers (state mode).")
    max_grad_norm: float = Field(10.0, gt=0.0, description="Gradient clipping by global norm.")
    target_update_every: int = by_mode(256, 1_000, "Environment steps between target-network updates.", gt=0)
    tau: float = Field(1.0, gt=0.0, le=1.0, description="Target update rate; 1.0 is a hard copy.")
    double_dqn: bool = Field(True, description="Double DQN targets (van Hasselt et al. 2016).")
    dueling: bool = Field(True, description="Dueling value and advantage heads (Wang et al. 2016).")
    n_step: int = Field(
        3, ge=1, le=50, description="Rewards summed per TD target (n-step returns); 1 is one-step Q-learning."
    )
    failure_reward: float = Field(
        0.0,
        description="Added to the reward of a step that ends its episode by failure (terminated, not a time limit), "
        "for learning only: e.g. -10 to punish a fall harder. Returns are reported without it.",
    )
    eps_start: float = Field(1.0, ge=0.0, le=1.0, description="Initial exploration epsilon.")
    eps_end: float = Field(0.04, ge=0.0, le=1.0, description="Final exploration epsilon.")
    eps_decay_steps: int = by_mode(8_000, 50_000, "Environment steps over which epsilon decays linearly.", gt=0)

    eval_episodes: int = Field(100, gt=0, description="Greedy episodes of the final evaluation.")
    eval_every: int = by_mode(
        1_000, 10_000, "Steps between validation evaluations that pick the best policy; 0: never.", ge=0
    )
    val_episodes: int = by_mode(20, 10, "Greedy episodes of each validation evaluation.", gt=0)
    stop_when_solved: bool = Field(True, description="Stop once a validation evaluation, confirmed, is solved.")
    confirm_episodes: int = Field(
        100,
        ge=0,
        description="Greedy episodes on further unseen seeds that confirm a validation reaching the solve threshold: "
        "only a confirmed one counts as solved (stops training, is kept first). 0: the validation alone decides.",
    )
    solve_threshold: float | None = Field(
        None, description="Mean return that counts as solved; default: the environment's own."
    )
    log_every: int = Field(500, gt=0, description="Steps between training-loss metrics.")

    @model_validator(mode="after")
    def _consistent(self) -> DQNConfig:
        if self.eps_end > self.eps_start:
            raise ValueError(
                f"epsilon must not go up: eps_start={self.eps_start} < eps_end={self.eps_end}; set eps_end <= eps_start"
            )
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"buffer_size={self.buffer_size} is smaller than batch_size={self.batch_size}; "
                "the replay memory must hold at least one batch"
            )
        if (self.pixel_top or 0.0) >= (1.0 if self.pixel_bottom is None else self.pixel_bottom):
            raise ValueError(
                f"the band of rows is empty: pixel_top={self.pixel_top} is not above pixel_bottom={self.pixel_bottom}; "
                "set pixel_top < pixel_bottom (fractions of the frame's height, 0 at the top)"
            )
        return self

    @property
    def registered_name(self) -> str:
        """The MLflow registered-model name: stable per family, environment and observation mode."""
        suffix = "" if self.obs_mode == "state" else f"-{self.obs_mode}"
        return f"dqn-{self.env_id}{suffix}"
