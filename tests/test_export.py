"""TorchScript and .pt2 (torch.export) exports, checked against eager in a fresh process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from models import dqn, gan
from rlgen.export.parity import check_parity, export_checked_programs
from rlgen.export.program import export_program, load_program
from rlgen.export.torchscript import load_scripted, script_module


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


@pytest.mark.parametrize("model", ["dqn", "cgan"])
def test_pt2_programs_match_eager_in_a_fresh_process(tmp_path: Path, model: str) -> None:
    torch.manual_seed(0)
    if model == "dqn":  # forward (actions) and q_values, each its own program
        module: nn.Module = dqn.GreedyPolicy(dqn.build_q_network((4,), 3, 32)).eval()
        inputs: tuple[Tensor, ...] = (torch.randn(16, 4),)
        methods = ("forward", "q_values")
    else:  # a conditional generator: (z, y) -> images
        module = gan.GeneratorExport(gan.Generator(8, 8, n_classes=10)).eval()
        inputs = (torch.randn(16, 8), torch.arange(16) % 10)
        methods = ("forward",)
    with torch.no_grad():
        expected = {m: getattr(module, m)(*inputs) for m in methods}
    check = export_checked_programs(module, inputs, tmp_path / "model.pt2", {"family": model}, expected)
    assert check.unsupported == "" and [p.name for p in check.paths] == [
        f"model{'' if m == 'forward' else '.' + m}.pt2" for m in methods
    ]
    assert all(p.max_abs_diff <= 1e-5 for p in check.parity.values()) and check.parity["forward"].outputs_equal
    assert check.tags() == {"export/pt2": ", ".join(sorted(p.name for p in check.paths))}

    loaded, metadata = load_program(check.paths[0])  # the batch dimension stays dynamic
    assert metadata == {"family": model, "method": "forward", "batch": "dynamic"}
    for n in (1, 40):
        batch = tuple(torch.cat([a] * 3)[:n] for a in inputs)
        with torch.no_grad():
            torch.testing.assert_close(loaded(*batch), module(*batch), rtol=0, atol=1e-5)


def test_pt2_parity_detects_a_different_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    q_network, other = dqn.QNetwork(4, 2, 16).eval(), dqn.QNetwork(4, 2, 16).eval()
    inputs = torch.randn(8, 4)
    path = export_program(q_network, (inputs,), tmp_path / "q.pt2", {})
    with torch.no_grad():
        parity = check_parity(path, inputs, {"forward": other(inputs)})["forward"]
    assert 1e-3 < parity.max_abs_diff < float("inf") and not parity.outputs_equal  # same shapes, other values


def test_corrupt_pt2_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(b"not an exported program")
    with pytest.raises(ValueError, match="model.pt2 is not a loadable .pt2 ExportedProgram"):
        load_program(path)


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: runs eagerly, cannot be traced by torch.export."""

    def forward(self, x: Tensor) -> Tensor:
        return x if x.sum() > 0 else -x


def test_a_module_torch_export_cannot_trace_is_reported_not_raised(tmp_path: Path) -> None:
    x = torch.ones(2, 3)
    check = export_checked_programs(DataDependent(), x, tmp_path / "model.pt2", {}, {"forward": x})
    assert check.paths == [] and check.parity == {} and not (tmp_path / "model.pt2").exists()
    assert check.tags()["export/pt2"].startswith(
        "unsupported: torch.export cannot trace DataDependent.forward: GuardOnDataDependentSymNode"
    )
