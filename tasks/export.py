"""TorchScript export and its parity check in a fresh process.

`python -m tasks.export MODULE INPUTS EXPECTED` is the fresh process: it loads the scripted
module with nothing but torch, runs it on the saved inputs and prints the comparison as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

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
        raise ValueError(f"{path} is not a loadable TorchScript file ({err.__class__.__name__}: {err})") from None
    return module.eval(), json.loads(extra[METADATA_FILE] or "{}")


class Parity(NamedTuple):
    max_abs_diff: float
    outputs_equal: bool  # for integer outputs (actions, tokens): exactly equal


def check_parity(
    path: Path, inputs: torch.Tensor | tuple[torch.Tensor, ...], expected: dict[str, torch.Tensor]
) -> dict[str, Parity]:
    """Run each method named in `expected` on `inputs` (one tensor or a tuple of arguments) in one
    fresh python process and compare.

    The fresh process proves the file stands alone: it has only torch and the saved module.
    """
    with tempfile.TemporaryDirectory(prefix="rlgen-parity-") as tmp:
        inputs_file, expected_file = Path(tmp) / "inputs.pt", Path(tmp) / "expected.pt"
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        torch.save([a.cpu() for a in args], inputs_file)
        torch.save({k: v.cpu() for k, v in expected.items()}, expected_file)
        done = subprocess.run(
            [sys.executable, "-m", "tasks.export", str(path), str(inputs_file), str(expected_file)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the parity check of {path} failed in its fresh process:\n{done.stderr[-2000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {method: Parity(**values) for method, values in results.items()}


def _compare(path: str, inputs_file: str, expected_file: str) -> dict[str, dict]:
    module, _ = load_scripted(Path(path))
    args = torch.load(inputs_file, weights_only=True)
    results = {}
    for method, expected in torch.load(expected_file, weights_only=True).items():
        with torch.no_grad():
            got = getattr(module, method)(*args)
        if got.shape != expected.shape:
            results[method] = Parity(float("inf"), False)._asdict()
            continue
        diff = (got.double() - expected.double()).abs().max().item() if got.numel() else 0.0
        results[method] = Parity(diff, bool(torch.equal(got, expected)))._asdict()
    return results


if __name__ == "__main__":
    print(json.dumps(_compare(*sys.argv[1:4])))
