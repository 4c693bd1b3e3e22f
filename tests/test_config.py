"""Bad configuration is refused before any work, with a message that names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlgen.cli import app
from rlgen.config import ConfigError, config_from_overrides, validate_config
from rlgen.families.dqn import DQNConfig
from rlgen.steps import prepare as inspect_env


def test_overrides_are_coerced_to_field_types() -> None:
    cfg = config_from_overrides(DQNConfig, ["lr=0.01", "double_dqn=true", "total_steps=200", "solve_threshold=none"])
    assert cfg.lr == 0.01 and cfg.double_dqn is True and cfg.total_steps == 200 and cfg.solve_threshold is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nope": 1}, r"unknown key 'nope' \(known keys: .*env_id"),
        ({"total_steps": "many"}, r"total_steps: Input should be a valid integer.*'many'"),
        ({"lr": -0.1}, r"lr: Input should be greater than 0"),
        ({"gamma": 0}, r"gamma: Input should be greater than 0"),
        ({"gamma": 1.5}, r"gamma: Input should be less than or equal to 1"),
        ({"eps_start": 0.1, "eps_end": 0.5}, r"epsilon must not go up"),
        ({"buffer_size": 16, "batch_size": 64}, r"buffer_size=16 is smaller than batch_size=64"),
        ({"obs_mode": "rgb"}, r"obs_mode: Input should be 'state' or 'pixels'"),
        ({"device": "tpu"}, r"unknown device 'tpu'"),
    ],
)
def test_invalid_values_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(DQNConfig, values)


def test_malformed_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="--set expects key=value"):
        config_from_overrides(DQNConfig, ["lr"])


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="Unknown environment env_id='NoSuchEnv-v0'"):
        inspect_env(DQNConfig(env_id="NoSuchEnv-v0"))


def test_continuous_actions_are_refused() -> None:
    with pytest.raises(ConfigError, match="DQN needs discrete actions, but Pendulum-v1"):
        inspect_env(DQNConfig(env_id="Pendulum-v1"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "lr=-1"], "lr: Input should be greater than 0"),
        (["--set", "colour=blue"], "unknown key 'colour'"),
    ],
)
def test_cli_refuses_bad_config_before_any_work(store: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["run", "dqn", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert not store.exists()  # no store, no run: nothing was written


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"val_fid_every": 0}, r"keep=best_val_fid selects .* which val_fid_every=0 turns off; set keep=last"),
        ({"keep": "first"}, r"keep: Input should be 'best_val_fid' or 'last'"),
        ({"val_fid_samples": 1}, r"val_fid_samples: Input should be greater than or equal to 2"),
    ],
)
def test_bad_validation_curve_settings_are_refused(values: dict, message: str) -> None:
    from rlgen.families.gan import GANConfig

    with pytest.raises(ConfigError, match=message):
        validate_config(GANConfig, values)
    assert validate_config(GANConfig, {"val_fid_every": 0, "keep": "last"}).val_fid_every == 0  # the curve off
