"""Gymnasium environments: checking an id, pixel observations, vector envs, non-overlapping episode seeds."""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from rlgen.errors import ConfigError

EVAL_WAVE = 50  # environments stepped together during evaluation


class EnvSpec(NamedTuple):
    env_id: str
    obs_shape: tuple[int, ...]  # as the Q-network sees it
    n_actions: int
    max_episode_steps: int | None
    solve_threshold: float | None  # the environment's reward_threshold unless the config sets one


class EnvConfig(Protocol):
    """The config keys an environment is made from (DQNConfig's)."""

    @property
    def seed(self) -> int: ...
    @property
    def env_id(self) -> str: ...
    @property
    def obs_mode(self) -> str: ...
    @property
    def frame_stack(self) -> int: ...
    @property
    def pixel_height(self) -> int: ...
    @property
    def pixel_width(self) -> int: ...
    @property
    def pixel_top(self) -> float | None: ...
    @property
    def pixel_bottom(self) -> float | None: ...
    @property
    def solve_threshold(self) -> float | None: ...


class PixelObservation(gym.ObservationWrapper):
    """Replace the observation with the rendered frame: grey, cut to a band of rows, area-downsampled to (H, W)."""

    def __init__(self, env: gym.Env, height: int, width: int, rows: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(env)
        self.size, self.rows = (height, width), rows
        self.observation_space = gym.spaces.Box(0, 255, shape=(height, width), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frame = self.env.render()  # (H0, W0, 3) uint8
        assert isinstance(frame, np.ndarray), "render_mode is rgb_array"
        top, bottom = (round(fraction * frame.shape[0]) for fraction in self.rows)
        return downsample(frame[top:bottom], self.size)


def downsample(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 frame (H0, W0, 3) as grey (the channels' mean) averaged over areas to `size`, uint8.

    When the sizes divide (CartPole's 600 columns to 60), one reshape and an integer sum, four times faster than
    torch's area interpolation, which handles the rest.
    """
    (h0, w0, channels), (h, w) = frame.shape, size
    if h0 % h == 0 and w0 % w == 0:
        n = (h0 // h) * (w0 // w) * channels
        total = frame.reshape(h, h0 // h, w, w0 // w, channels).sum(axis=(1, 3, 4), dtype=np.uint32)
        return ((total + n // 2) // n).astype(np.uint8)
    grey = torch.from_numpy(np.ascontiguousarray(frame)).float().mean(dim=2)[None, None]  # (1, 1, H0, W0)
    small = F.interpolate(grey, size=size, mode="area")[0, 0]
    return small.round().clamp(0, 255).to(torch.uint8).numpy()


def episode_seeds(cfg: EnvConfig, purpose: str, n: int) -> list[int]:
    """Environment seeds that never overlap between training, validation and evaluation."""
    offset = {"train": 0, "validation": 1, "evaluation": 2, "confirmation": 3}[purpose] * 10**8
    return [offset + cfg.seed * 10**4 + i for i in range(n)]


def make_env(
    env_id: str,
    obs_mode: str = "state",
    frame_stack: int = 2,
    height: int = 40,
    width: int = 60,
    rows: tuple[float, float] = (0.0, 1.0),
) -> gym.Env:
    """One environment, observing state vectors or stacks of downsampled frames (a band of `rows`, as fractions of
    the frame's height; policies exported before rows existed saw whole frames)."""
    if obs_mode == "state":
        return gym.make(env_id)
    env = gym.make(env_id, render_mode="rgb_array")
    env = PixelObservation(env, height, width, (float(rows[0]), float(rows[1])))
    return gym.wrappers.FrameStackObservation(env, frame_stack)  # (K, H, W)


def make_vector_env(cfg: EnvConfig | dict[str, Any], num_envs: int) -> SyncVectorEnv:
    """`num_envs` copies in one process; a finished episode resets within the same step.

    Same-step autoreset (not Gymnasium 1.x's default next-step) means every step returns a real
    transition; the finished episode's last observation is in infos["final_obs"].
    """
    settings = cfg if isinstance(cfg, dict) else env_settings(cfg)
    factory = partial(make_env, **settings)
    return SyncVectorEnv([factory] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)


def env_settings(cfg: EnvConfig) -> dict[str, Any]:
    """The keyword arguments of `make_env` a config implies; also stored with the exported policy."""
    return {
        "env_id": cfg.env_id,
        "obs_mode": cfg.obs_mode,
        "frame_stack": cfg.frame_stack,
        "height": cfg.pixel_height,
        "width": cfg.pixel_width,
        "rows": (cfg.pixel_top or 0.0, 1.0 if cfg.pixel_bottom is None else cfg.pixel_bottom),
    }


def _make_checked(cfg: EnvConfig) -> gym.Env:
    """The config's environment, made and (for pixels) rendered once; ConfigError when an extra it needs is missing
    or it cannot render frames."""
    try:
        env = make_env(**env_settings(cfg))
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(
            f"env_id={cfg.env_id!r} needs a Gymnasium extra that is not installed here ({err}). Fix: install that "
            "extra into this environment (pip install 'gymnasium[box2d]' for Box2D, 'gymnasium[mujoco]' for MuJoCo), "
            "or pick an environment that needs none, for example --set env_id=CartPole-v1 (also Acrobot-v1, "
            "MountainCar-v0). Nothing was started."
        ) from None
    if cfg.obs_mode != "pixels":
        return env
    modes = env.unwrapped.metadata.get("render_modes") or []
    try:
        if "rgb_array" not in modes:
            raise ConfigError(
                f"obs_mode=pixels needs frames, but {cfg.env_id} cannot render them (its render modes: "
                f"{', '.join(modes) or 'none'}; pixels need rgb_array). Fix: use --set obs_mode=state, or an "
                "environment that renders rgb_array frames (CartPole-v1, Acrobot-v1, MountainCar-v0). Nothing was "
                "started."
            )
        env.reset(seed=0)  # renders the first frame
    except ConfigError:
        env.close()
        raise
    except Exception as err:
        env.close()
        raise ConfigError(
            f"obs_mode=pixels needs frames, but rendering {cfg.env_id} failed ({err.__class__.__name__}: {err}). "
            "Fix: use --set obs_mode=state, or install what its renderer needs (pygame for classic control). "
            "Nothing was started."
        ) from None
    return env


def describe_env(cfg: EnvConfig) -> EnvSpec:
    """Check that the environment exists and suits DQN, and return its shapes; raises ConfigError."""
    try:
        spec = gym.spec(cfg.env_id)
    except gym.error.Error as err:
        raise ConfigError(
            f"Unknown environment env_id={cfg.env_id!r}: {err}. "
            "Pass a registered Gymnasium id, for example --set env_id=CartPole-v1."
        ) from None
    env = _make_checked(cfg)
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ConfigError(
                f"DQN needs discrete actions, but {cfg.env_id} has action space {env.action_space}; "
                "pick an environment with a Discrete action space (CartPole-v1, Acrobot-v1, "
                "MountainCar-v0, LunarLander-v3)."
            )
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise ConfigError(
                f"DQN needs Box observations, but {cfg.env_id} has {env.observation_space}; "
                "pick an environment with vector observations or use --set obs_mode=pixels."
            )
        if cfg.obs_mode == "state" and len(env.observation_space.shape) != 1:
            raise ConfigError(
                f"{cfg.env_id} observes arrays of shape {env.observation_space.shape}, not vectors; "
                "use --set obs_mode=pixels."
            )
        threshold = cfg.solve_threshold if cfg.solve_threshold is not None else spec.reward_threshold
        return EnvSpec(
            env_id=cfg.env_id,
            obs_shape=tuple(env.observation_space.shape),
            n_actions=int(env.action_space.n),
            max_episode_steps=spec.max_episode_steps,
            solve_threshold=None if threshold is None else float(threshold),
        )
    finally:
        env.close()
