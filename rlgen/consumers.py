"""Use exported models by what they do, whichever family made them: play a policy, sample images, score images
with an energy, continue a text. Only the TorchScript file and its embedded metadata are needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from models.dqn import greedy_returns, torch_actor
from rlgen.data.vocabulary import Vocabulary, generate
from rlgen.environments import make_vector_env
from rlgen.export.torchscript import load_scripted
from rlgen.tracking.artifacts import download, temp_dir
from rlgen.tracking.registry import resolve_model

POLICY_FILE = "policy.pt"


class PlayResult(NamedTuple):
    model: str
    env_id: str
    returns: np.ndarray


def fetch_exported(reference: str, dst: Path, folder: str, filename: str) -> Path:
    """The local TorchScript file of a model given as a .pt path, a registered name or a run id."""
    path = Path(reference)
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"no TorchScript file at {path}")
        return path
    run_id, artifact_path = resolve_model(reference)
    artifact_path = artifact_path or folder
    local = download(run_id, artifact_path, dst)
    candidate = local / filename if local.is_dir() else local
    if not candidate.is_file():
        raise FileNotFoundError(f"{reference!r} (run {run_id}) has no {artifact_path}/{filename}; was it exported?")
    return candidate


def play_policy(reference: str, episodes: int, seed: int = 0) -> PlayResult:
    """Greedy returns of `episodes` episodes, seeded seed, seed + 1, ..."""
    with temp_dir() as tmp:
        policy, metadata = load_scripted(fetch_exported(reference, Path(tmp), "policy", POLICY_FILE))
    if "env" not in metadata or "n_actions" not in metadata:
        raise ValueError(
            f"{reference!r} is not an exported policy (family: {metadata.get('family')!r}); play needs a dqn-* model"
        )
    envs = make_vector_env(metadata["env"], min(episodes, 50))
    try:
        returns = greedy_returns(torch_actor(policy, torch.device("cpu")), envs, [seed + i for i in range(episodes)])
    finally:
        envs.close()
    return PlayResult(reference, metadata["env"]["env_id"], returns)


def sample_images(reference: str, n: int, label: int | None, seed: int, output: Path) -> Path:
    """Write a grid of `n` samples of an exported image model (of class `label` if conditional)."""
    from torchvision.utils import save_image

    with temp_dir() as tmp:
        module, metadata = load_scripted(fetch_exported(reference, Path(tmp), "model", "model.pt"))
    if metadata.get("module") == "energy":
        raise ValueError(
            f"{reference!r} is a descriptor's energy (a scoring module): use `rlgen score`, or sample coop-*"
        )
    if "latent_dim" not in metadata:
        raise ValueError(f"{reference!r} is not an exported image model (family: {metadata.get('family')!r})")
    classes = int(metadata["n_classes"])
    if label is not None and not metadata["conditional"]:
        raise ValueError(f"{reference!r} ({metadata['variant']}) is unconditional; drop --label")
    if label is not None and not 0 <= label < classes:
        raise ValueError(f"--label {label} is out of range; {reference!r} knows classes 0..{classes - 1}")
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, int(metadata["latent_dim"]), generator=generator)
    y = torch.full((n,), label, dtype=torch.long) if label is not None else torch.arange(n) % classes
    with torch.no_grad():
        images = module(z, y)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, output, nrow=int(n**0.5) if int(n**0.5) ** 2 == n else 10, padding=2)
    return output


def read_gray_images(paths: list[Path], size: int = 28) -> torch.Tensor:
    """Images (N, 1, size, size) in [0, 1] from image files, converted to grey and area-resized if needed."""
    from PIL import Image, UnidentifiedImageError

    tensors = []
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
        tensors.append(torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)[None])
    return torch.stack(tensors)


def score_images(reference: str, paths: list[Path]) -> tuple[dict[str, Any], torch.Tensor]:
    """Energies (N,) of image files under an exported descriptor (lower = likelier), and its metadata."""
    with temp_dir() as tmp:
        module, metadata = load_scripted(fetch_exported(reference, Path(tmp), "model", "model.pt"))
    if metadata.get("module") != "energy":
        raise ValueError(
            f"{reference!r} is not an exported descriptor (module: {metadata.get('module')!r}); score needs one"
        )
    with torch.no_grad():
        return metadata, module(read_gray_images(paths))


def generate_text(reference: str, prompt: str, tokens: int, temperature: float, top_k: int, seed: int) -> str:
    """The prompt continued by `tokens` tokens sampled from an exported language model and its embedded vocabulary."""
    with temp_dir() as tmp:
        module, metadata = load_scripted(fetch_exported(reference, Path(tmp), "model", "model.pt"))
    if "vocab" not in metadata:
        raise ValueError(
            f"{reference!r} is not an exported language model (family: {metadata.get('family')!r}); "
            "generate needs an lm-* model, e.g. lm-char-tinyshakespeare"
        )
    if temperature < 0 or top_k < 0:
        raise ValueError(f"--temperature {temperature} and --top-k {top_k} must be >= 0 (0: greedy, and no top-k cut)")
    return generate(module, Vocabulary.from_json(metadata["vocab"]), prompt, tokens, temperature, seed, top_k)
