"""Checkpoint files: written through a temporary file and a rename, read with weights_only=True.

A run's resumable checkpoint lives at `<rlgen home>/checkpoints/<run id>/train.pt`, where a Prefect retry of
the training task and `rlgen run NAME --resume RUN_ID` find it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from rlgen.settings import checkpoints_dir


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` through a temporary file and a rename, so no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written, free = _size(tmp), _free_bytes(path.parent)
        Path(tmp).unlink(missing_ok=True)  # the previous checkpoint at `path` is untouched
        full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
        if full or (isinstance(err, RuntimeError) and free < LOW_SPACE):  # torch's writer hides the OSError
            raise OSError(
                errno.ENOSPC, f"no space left on device: {free} bytes free in {path.parent} after {written} written"
            ) from err
        raise
    return path


LOW_SPACE = 1 << 20  # bytes free after a failed write that mean the disk filled up


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _free_bytes(folder: Path) -> int:
    """Bytes free for this user in the file system holding `folder`."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; only tensors and plain data are accepted."""
    try:
        payload: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{path} is not a readable rlgen checkpoint ({err.__class__.__name__}: {err})") from None
    return payload


def run_checkpoint_path(run_id: str, name: str = "train.pt") -> Path:
    """Where the training of run `run_id` keeps its resumable checkpoint."""
    return checkpoints_dir() / run_id / name


def checkpoint_step(path: Path) -> int | None:
    """The step of the checkpoint at `path` (tensors memory-mapped, not read); None if missing or unreadable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(payload["step"])
    except Exception:  # missing, half-written by another tool, not a checkpoint: nothing to report
        return None
