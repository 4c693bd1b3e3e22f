"""Environments that cannot be used are refused before any work, exit 2 and one paragraph: an id whose Gymnasium
extra is not installed here, and `obs_mode=pixels` on an environment that cannot render frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

from rlgen.cli import app

EXTRAS = {"LunarLander-v3": "Box2D", "HalfCheetah-v5": "mujoco"}  # id -> the module its extra installs


def run_dqn(*pairs: str) -> Any:
    return CliRunner().invoke(app, ["run", "dqn", *(a for p in pairs for a in ("--set", p))], env={"COLUMNS": "400"})


def one_paragraph(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    (message,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    return message


@pytest.mark.parametrize("env_id", list(EXTRAS))
def test_an_environment_whose_extra_is_missing_is_refused_before_any_work(env_id: str, store: Path) -> None:
    if importlib.util.find_spec(EXTRAS[env_id]) is not None:
        pytest.skip(f"{EXTRAS[env_id]} is installed here: {env_id} can be made")
    result = run_dqn(f"env_id={env_id}")
    assert result.exit_code == 2, result.output
    message = one_paragraph(result.stderr)
    assert f"error: env_id={env_id!r} needs a Gymnasium extra that is not installed here" in message, message
    assert "is not installed" in message and "pip install" in message  # Gymnasium's own hint, quoted
    assert "or pick an environment that needs none, for example --set env_id=CartPole-v1" in message
    assert not store.exists()  # nothing was started: not even the MLflow store


class Blind(gym.Env):
    """A discrete environment with vector observations that renders nothing."""

    metadata: dict[str, Any] = {"render_modes": []}
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


def test_pixels_on_an_environment_that_cannot_render_are_refused_before_any_work(store: Path) -> None:
    gym.register("rlgen-test/Blind-v0", entry_point=Blind, max_episode_steps=10)
    try:
        result = run_dqn("env_id=rlgen-test/Blind-v0", "obs_mode=pixels")
    finally:
        gym.registry.pop("rlgen-test/Blind-v0")
    assert result.exit_code == 2, result.output
    message = one_paragraph(result.stderr)
    assert (
        "error: obs_mode=pixels needs frames, but rlgen-test/Blind-v0 cannot render them (its render modes: " in message
    )
    assert "none; pixels need rgb_array). Fix: use --set obs_mode=state" in message, message
    assert not store.exists()
