"""What the chaos harness trains for each family: tiny settings, their budget, how often they checkpoint, and what
their resume promises (bitwise, or for DQN, whose environments cannot be snapshot, the counters and metric steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.common import DATA

MNIST = DATA / "mnist" / "raw"
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
CORPUS_CHARS = 1500  # the LM's corpus: the start of Tiny Shakespeare, so that epochs (and validations) end often


class Setup(NamedTuple):
    """One family's chaos run: its `--set` settings, its budget in steps, its checkpoint interval."""

    settings: dict[str, Any]
    budget: int
    every: int
    bitwise: bool = True  # whether a resumed run must end bit for bit as an uninterrupted one
    episodic: tuple[str, ...] = ()  # keys logged at episode ends (not bitwise: resumed runs start new episodes)


def _images(budget: int, every: int, **extra: Any) -> Setup:
    settings = {
        "data_dir": str(MNIST),
        "device": "cpu",
        "epochs": 1,
        "max_steps": budget,
        "batch_size": 16,
        "log_every": 2,
        "checkpoint_every": every,
        "fid_samples": 100,
        "val_fid_samples": 100,
        "lenet_epochs": 1,
    }
    return Setup(settings | extra, budget, every)


def setups(kills: int, work: Path) -> dict[str, Setup]:
    """Tiny settings for every family the harness knows, on budgets that leave room for `kills` kills; the LM's
    corpus is written to `work`."""
    every = 2
    budget = every * (3 * kills + 3)
    corpus = work / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text()[:CORPUS_CHARS])
    grid = {"grid_size": 16}
    lm = {
        "corpus": "custom",
        "corpus_path": str(corpus),
        "device": "cpu",
        "hidden": 16,
        "embedding": 8,
        "layers": 2,
        "dropout": 0.2,
        "bptt": 12,
        "batch_size": 4,
        "eval_batch_size": 2,
        "epochs": 20,
        "max_steps": budget,
        "eval_every": 5,
        "log_every": 2,
        "checkpoint_every": every,
        "sample_tokens": 5,
        "patience": 20,
    }
    dqn_every = 50
    dqn_budget = dqn_every * (3 * kills + 3)
    dqn = {
        "device": "cpu",
        "total_steps": dqn_budget,
        "learning_starts": 100,
        "train_every": 25,
        "gradient_steps": 2,
        "batch_size": 16,
        "hidden": 16,
        "eval_every": dqn_budget // 3,
        "val_episodes": 2,
        "eval_episodes": 2,
        "log_every": 25,
        "target_update_every": 50,
        "checkpoint_every": dqn_every,
        "checkpoint_replay": True,
        "n_step": 1,  # one transition stored per step: n-step returns hold the last n - 1 back
        "stop_when_solved": False,
    }
    return {
        "dqn": Setup(dqn, dqn_budget, dqn_every, bitwise=False, episodic=("rl/",)),
        "vae": _images(budget, every, hidden=32, latent_dim=4, iw_samples=2, iw_images=20),
        "gan": _images(budget, every, latent_dim=8, **grid),
        "descriptor": _images(budget, every, langevin_steps=3, **grid),
        "generator": _images(budget, every, infer_steps=2, recon_images=50, **grid),
        "coop": _images(budget, every, langevin_steps=3, infer_steps=1, **grid),
        "lm": Setup(lm, budget, every),
    }
