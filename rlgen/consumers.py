"""Use models by what they do, whichever family made them: play a policy, sample images, score images with an
energy, continue a text. Every command loads its model the one way (rlgen.serving.load: an MLflow pyfunc model)
and asks it through its interface, as any MLflow client would."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException

from models.dqn import greedy_returns
from rlgen.environments import make_vector_env
from rlgen.plots import save_grid
from rlgen.serving.load import UsableModel, load


class PlayResult(NamedTuple):
    model: str
    env_id: str
    returns: np.ndarray


def _ask(model: UsableModel, data: Any, params: dict[str, Any] | None = None) -> Any:
    """The model's answer; a request it refuses is a ValueError with its message (the CLI prints one paragraph)."""
    try:
        return model.predict(data, params) if params else model.predict(data)
    except MlflowException as err:
        raise ValueError(err.message.rsplit("Error: ", 1)[-1]) from None


def play_policy(reference: str, episodes: int, seed: int = 0) -> PlayResult:
    """Greedy returns of `episodes` episodes, seeded seed, seed + 1, ..."""
    model = load(reference, "play")
    env = model.metadata["env"]
    dtype = np.uint8 if env["obs_mode"] == "pixels" else np.float32
    envs = make_vector_env(env, min(episodes, 50))
    try:
        returns = greedy_returns(
            lambda obs: np.asarray(_ask(model, obs.astype(dtype))), envs, [seed + i for i in range(episodes)]
        )
    finally:
        envs.close()
    return PlayResult(reference, env["env_id"], returns)


def sample_images(reference: str, n: int, label: int | None, seed: int, output: Path) -> Path:
    """Write a grid of `n` samples of an image model (of class `label` if conditional); image i is seed + i's."""
    model = load(reference, "sample")
    rows = pd.DataFrame({"seed": np.arange(seed, seed + n, dtype=np.int64)})
    if label is not None:
        rows["label"] = label
    images = torch.from_numpy(np.asarray(_ask(model, rows), dtype=np.uint8)).float().div(255).unsqueeze(1)
    output.parent.mkdir(parents=True, exist_ok=True)
    return save_grid(images, output, nrow=int(n**0.5) if int(n**0.5) ** 2 == n else 10)


def read_gray_images(paths: list[Path], size: int = 28) -> np.ndarray:
    """Images (N, size, size) float32 in [0, 1] from image files, converted to grey and area-resized if needed."""
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                grey = image.convert("L")
        except FileNotFoundError:
            raise FileNotFoundError(f"no image file at {path}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{path} is not a readable image ({err})") from None
        if grey.size != (size, size):
            grey = grey.resize((size, size), Image.Resampling.BOX)
        arrays.append(np.asarray(grey, dtype=np.float32) / 255.0)
    return np.stack(arrays)


def score_images(reference: str, paths: list[Path]) -> tuple[dict[str, Any], np.ndarray]:
    """Energies (N,) of image files under a descriptor (lower = likelier), and its metadata."""
    model = load(reference, "score")
    return model.metadata, np.asarray(_ask(model, read_gray_images(paths)))


def generate_text(reference: str, prompt: str, tokens: int, temperature: float, top_k: int, seed: int) -> str:
    """The prompt continued by `tokens` tokens sampled from a language model; the same seed gives the same text."""
    model = load(reference, "generate")
    request = pd.DataFrame(
        {"prompt": [prompt], "tokens": [tokens], "temperature": [temperature], "top_k": [top_k], "seed": [seed]}
    )
    return str(_ask(model, request)["text"][0])
