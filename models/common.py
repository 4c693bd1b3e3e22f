"""Torch-only helpers shared by every model family: seeding, RNG snapshots and device choice."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn

from models.errors import NonFiniteLoss, TrainingDiverged

__all__ = ["NonFiniteLoss", "TrainingDiverged"]  # raised by the helpers below; defined without torch


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python's, numpy's and torch's (CPU and CUDA) generator states, as tensors and plain data so that a
    checkpoint holding them loads with torch.load(weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators from `rng_state()`'s snapshot."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(name: str) -> torch.device:
    """Map a config's device name to a torch.device; 'auto' picks CUDA, then MPS, then the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_device(tensor: Tensor, device: torch.device | str) -> Tensor:
    """Move a CPU tensor to `device`; towards CUDA through pinned memory, without blocking the host."""
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device that supports it (when `enabled`); elsewhere full fp32 precision."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_device(device: torch.device) -> None:
    """Per-process settings for a training device: cuDNN picks the fastest convolution kernels for the
    fixed input shapes of these models, and fp32 matmuls may use TF32 tensor cores."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def compile_modules(*modules: nn.Module) -> None:
    """torch.compile each module in place (its state_dict keys stay as they are)."""
    for module in modules:
        module.compile()


def device_available(device: torch.device) -> bool:
    """Whether tensors can be placed on `device` in this process."""
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return device.type == "cpu"


def check_finite(stats: Mapping[str, Tensor | float], step: int) -> None:
    """Raise NonFiniteLoss naming the first non-finite statistic of `step`.

    On the CPU each scalar is read directly (microseconds); on an accelerator they are stacked so that the
    check costs one device synchronisation, not one per statistic.
    """
    tensors = [v for v in stats.values() if isinstance(v, Tensor) and v.device.type != "cpu"]
    if tensors:
        finite = bool(torch.isfinite(torch.stack([v.detach().float().reshape(()) for v in tensors])).all())
        finite = finite and all(
            math.isfinite(float(v)) for v in stats.values() if not isinstance(v, Tensor) or v.device.type == "cpu"
        )
    else:
        finite = all(math.isfinite(float(v)) for v in stats.values())
    if not finite:
        bad = {k: float(v) for k, v in stats.items() if not math.isfinite(float(v))}
        raise NonFiniteLoss(f"non-finite {', '.join(f'{k} = {v}' for k, v in bad.items())} at step {step}")
