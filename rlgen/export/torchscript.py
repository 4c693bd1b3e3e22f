"""TorchScript files with rlgen's metadata embedded (rlgen.json), and loading them back."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

METADATA_FILE = "rlgen.json"


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch's deprecation notice for torch.jit, and nothing else: TorchScript is what users asked for."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def script_module(module: nn.Module, path: Path, metadata: dict) -> Path:
    """Compile `module` with torch.jit.script and save it with `metadata` embedded as rlgen.json."""
    module = module.eval().cpu()
    with _quiet_jit():
        scripted = torch.jit.script(module)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})
    return path


def load_scripted(path: Path, device: torch.device | str = "cpu") -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file saved by `script_module`, with its metadata."""
    extra = {METADATA_FILE: ""}
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(
            f"{path} is not a loadable TorchScript file ({_why_not_scripted(path, err)}); pass the registered model's "
            "name, or the file `rlgen run` exported (artifacts/model.pt, or artifacts/policy.pt for DQN, of the "
            "registered MLflow model), and download it again if it was damaged"
        ) from None
    return module.eval(), json.loads(extra[METADATA_FILE] or "{}")


def _why_not_scripted(path: Path, err: Exception) -> str:
    """What torch.jit.load's error means, in one clause: a checkpoint, a truncated or a corrupt file."""
    import zipfile

    try:
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
    except (OSError, zipfile.BadZipFile):
        names = []
    if any(n.endswith("/data.pkl") for n in names) and not any(n.endswith("/constants.pkl") for n in names):
        return "it is a torch.save file, such as a training checkpoint, not an exported TorchScript model"
    first = str(err).split(". This is an internal miniz error")[0]  # torch's advice that follows is generic
    return f"{err.__class__.__name__}: {first}"
