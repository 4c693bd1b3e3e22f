"""Play an exported policy: only the TorchScript file and its embedded metadata are needed."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from models.dqn import greedy_returns, torch_actor
from tasks import tracking
from tasks.envs import make_vector_env
from tasks.export import load_scripted

POLICY_FILE = "policy.pt"


class PlayResult(NamedTuple):
    model: str
    env_id: str
    returns: np.ndarray


def fetch_policy(reference: str, dst: Path) -> Path:
    """The local TorchScript file of a model given as a path, a registered name or a run id."""
    path = Path(reference)
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"no policy file at {path}")
        return path
    run_id, artifact_path = tracking.resolve_model(reference)
    folder = tracking.download(run_id, artifact_path, dst)
    candidate = folder / POLICY_FILE if folder.is_dir() else folder
    if not candidate.is_file():
        raise FileNotFoundError(f"{reference!r} (run {run_id}) has no {artifact_path}/{POLICY_FILE}; was it exported?")
    return candidate


def play_policy(reference: str, episodes: int, seed: int = 0) -> PlayResult:
    """Greedy returns of `episodes` episodes, seeded seed, seed + 1, ..."""
    with tracking.temp_dir() as tmp:
        policy, metadata = load_scripted(fetch_policy(reference, Path(tmp)))
    if metadata.get("family") != "dqn":
        raise ValueError(f"{reference!r} is not an exported DQN policy (family: {metadata.get('family')!r})")
    envs = make_vector_env(metadata["env"], min(episodes, 50))
    try:
        returns = greedy_returns(torch_actor(policy, torch.device("cpu")), envs, [seed + i for i in range(episodes)])
    finally:
        envs.close()
    return PlayResult(reference, metadata["env"]["env_id"], returns)
