"""TorchScript export of the greedy policy, checked against eager in a fresh process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import dqn
from tasks.export import check_parity, load_scripted, script_module


@pytest.mark.parametrize("obs_shape", [(4,), (2, 40, 60)])
def test_scripted_policy_matches_eager_in_a_fresh_process(tmp_path: Path, obs_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    policy = dqn.GreedyPolicy(dqn.build_q_network(obs_shape, 3, 32)).eval()
    path = script_module(policy, tmp_path / "policy.pt", {"family": "dqn", "obs_shape": list(obs_shape)})
    if len(obs_shape) == 3:
        inputs = torch.randint(0, 256, (16, *obs_shape), dtype=torch.uint8)
    else:
        inputs = torch.randn(16, *obs_shape)
    with torch.no_grad():
        expected = {"q_values": policy.q_values(inputs), "forward": policy(inputs)}
    parity = check_parity(path, inputs, expected)
    assert parity["q_values"].max_abs_diff <= 1e-5
    assert parity["forward"].outputs_equal

    loaded, metadata = load_scripted(path)
    assert metadata == {"family": "dqn", "obs_shape": list(obs_shape)}
    assert torch.equal(loaded(inputs), expected["forward"])


def test_parity_check_detects_a_different_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    policy = dqn.GreedyPolicy(dqn.QNetwork(4, 2, 16)).eval()
    path = script_module(policy, tmp_path / "policy.pt", {})
    inputs = torch.randn(8, 4)
    parity = check_parity(path, inputs, {"q_values": policy.q_values(inputs).detach() + 1e-3})
    assert parity["q_values"].max_abs_diff == pytest.approx(1e-3, rel=1e-3)


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.pt"
    path.write_bytes(b"not a torchscript archive")
    with pytest.raises(ValueError, match="is not a loadable TorchScript file"):
        load_scripted(path)
