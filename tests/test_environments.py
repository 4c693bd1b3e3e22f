"""Pixel observations: the downsampling, the band of rows they keep, and the defaults that follow obs_mode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlgen.environments import downsample, env_settings, make_env
from rlgen.families.dqn import DQNConfig


def torch_area(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    grey = torch.from_numpy(frame).double().mean(dim=2)[None, None]
    return F.interpolate(grey, size=size, mode="area")[0, 0].numpy()


@pytest.mark.parametrize(
    ("shape", "size"), [((240, 600, 3), (24, 60)), ((400, 600, 3), (40, 60)), ((97, 131, 3), (24, 60))]
)
def test_downsample_is_the_area_mean_of_the_grey_frame(shape: tuple[int, int, int], size: tuple[int, int]) -> None:
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    small = downsample(frame, size)
    assert small.shape == size and small.dtype == np.uint8
    # both paths (integer factors and torch's interpolation) round the exact area mean to the nearest level
    assert np.abs(small.astype(np.float64) - torch_area(frame, size)).max() <= 0.5 + 1e-9


def test_pixel_observation_keeps_the_band_of_rows_where_cartpole_is_drawn() -> None:
    cfg = DQNConfig(obs_mode="pixels")
    assert (cfg.pixel_top, cfg.pixel_bottom, cfg.pixel_height) == (0.3, 0.9, 24)
    env = make_env(**env_settings(cfg))
    raw = gym.make("CartPole-v1", render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=3)
        raw.reset(seed=3)
        frame = raw.render()
        assert obs.shape == (cfg.frame_stack, 24, 60) and obs.dtype == np.uint8
        np.testing.assert_array_equal(obs[-1], downsample(frame[120:360], (24, 60)))
        # the cart and pole are inside the band: its frame is not blank, and what was cut off is background
        assert obs[-1].min() < 200
        assert (frame[:120] == 255).all() and (frame[360:] == 255).all()
    finally:
        env.close()
        raw.close()


def test_defaults_follow_the_observation_mode_and_stay_overridable() -> None:
    state, pixels = DQNConfig(), DQNConfig(obs_mode="pixels")
    assert (state.lr, state.train_every, state.gradient_steps, state.eps_decay_steps) == (2.3e-3, 64, 64, 8_000)
    assert (pixels.lr, pixels.train_every, pixels.gradient_steps, pixels.eps_decay_steps) == (2.5e-4, 4, 1, 50_000)
    assert DQNConfig(obs_mode="pixels", lr=1e-3, pixel_top=0.0, pixel_bottom=1.0).lr == 1e-3
    assert env_settings(DQNConfig(obs_mode="pixels", pixel_top=0.0, pixel_bottom=1.0))["rows"] == (0.0, 1.0)


def test_an_empty_band_of_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="the band of rows is empty: pixel_top=0.6 is not above pixel_bottom=0.5"):
        DQNConfig(obs_mode="pixels", pixel_top=0.6, pixel_bottom=0.5)
