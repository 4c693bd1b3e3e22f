"""The DQN family: a Deep Q-Network agent on a Gymnasium environment, from state vectors or pixels."""

from rlgen.families.dqn.config import DQNConfig
from rlgen.family import Branch, Family, Primary

FAMILY = Family(
    name="dqn",
    config=DQNConfig,
    summary="DQN agent on a Gymnasium environment (CartPole-v1 by default).",
    primary=Primary("eval/mean_return", higher_is_better=True),
    headline=("mean_return", "solved"),
    evaluation=("eval_episodes",),
    consumer="play",
    tags=("env_id", "obs_mode"),
    branches={"dqn": Branch({}, {"total_steps": 30_000, "eval_episodes": 20}, {"total_steps": 100_000})},
    implementation="rlgen.families.dqn.train",
)

__all__ = ["FAMILY", "DQNConfig"]
