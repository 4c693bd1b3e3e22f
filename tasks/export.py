"""TorchScript and `.pt2` (torch.export) export, and their parity check in a fresh process.

`python -m tasks.export MODULE INPUTS EXPECTED` is the fresh process: it loads the scripted module
(or the `.pt2` programs) with nothing but torch, runs it on the saved inputs and prints the comparison as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

import torch
from torch import nn

METADATA_FILE = "rlgen.json"
PROGRAM_SUFFIX = ".pt2"
_EXPORT_LOCK = threading.Lock()  # torch.export traces with process-wide state; the pipeline exports from several threads


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
            f"{path} is not a loadable TorchScript file ({_why_not_scripted(path, err)}); pass the file `rlgen run` exported "
            "(policy/policy.pt or model/model.pt of its run) or the registered model's name, and download it again if it was damaged"
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


class ExportUnsupported(RuntimeError):
    """torch.export cannot trace the module; the message says why."""


class _Method(nn.Module):
    """A module whose forward is another module's method, for torch.export (which traces forward only)."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return getattr(self.module, self.method)(*args)


def program_path(path: Path, method: str) -> Path:
    """The .pt2 file of one method: `path` itself for forward, `<stem>.<method>.pt2` beside it otherwise."""
    return path if method == "forward" else path.with_name(f"{path.stem}.{method}{PROGRAM_SUFFIX}")


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence torch.export's notice that nn.LSTM/GRU reassign their flat weights while traced (harmless: parity checks it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights", category=UserWarning)
        yield


def export_program(
    module: nn.Module, example_args: tuple[torch.Tensor, ...], path: Path, metadata: dict,
    method: str = "forward", batch_dims: tuple[int, ...] | None = None,
) -> Path:
    """Export `module.<method>` with torch.export.export, batch dimension dynamic, and save it as a `.pt2`
    ExportedProgram at `path` with `metadata` embedded as rlgen.json.

    `batch_dims` gives each argument's batch dimension (default 0 for all). A module whose batch size
    torch.export cannot keep symbolic is exported at the examples' batch size (metadata "batch"). Raises
    ExportUnsupported, with torch's reason, when torch.export cannot trace the module at all.
    """
    target = module.eval().cpu() if method == "forward" else _Method(module.eval().cpu(), method)
    batch = torch.export.Dim("batch", min=1)
    dynamic = tuple({dim: batch} for dim in batch_dims or (0,) * len(example_args))
    with _EXPORT_LOCK, _quiet_export():
        try:  # _Method's forward takes *args: its shapes nest in one more tuple
            program, size = torch.export.export(target, example_args, dynamic_shapes=dynamic if method == "forward" else (dynamic,)), "dynamic"
        except Exception:  # e.g. code that fixes the batch size: export at the examples' size
            try:
                program, size = torch.export.export(target, example_args), example_args[0].size(batch_dims[0] if batch_dims else 0)
            except Exception as err:  # tracing failed: a construct torch.export does not support (the module runs eagerly)
                raise ExportUnsupported(f"torch.export cannot trace {type(module).__name__}.{method}: {_first_line(err)}") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps({**metadata, "method": method, "batch": size})})
    return path


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{err.__class__.__name__}: {lines[0] if lines else ''}"


def load_program(path: Path) -> tuple[nn.Module, dict]:
    """Load a `.pt2` file saved by `export_program` as a callable module (CPU), with its metadata."""
    extra = {METADATA_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{path} is not a loadable .pt2 ExportedProgram ({_first_line(err)}); pass the file `rlgen run` "
                         "exported, and download it again if it was damaged") from None
    return program.module(), json.loads(extra[METADATA_FILE] or "{}")


class Parity(NamedTuple):
    max_abs_diff: float
    outputs_equal: bool  # for integer outputs (actions, tokens): exactly equal


Outputs = torch.Tensor | tuple[torch.Tensor, ...]  # what a method returns


def check_parity(path: Path, inputs: torch.Tensor | tuple[torch.Tensor, ...], expected: dict[str, Outputs]) -> dict[str, Parity]:
    """Run each method named in `expected` on `inputs` (one tensor or a tuple of arguments) in one
    fresh python process and compare (a tuple of outputs by its largest difference).

    `path` is a TorchScript file, or a `.pt2` whose methods lie in their own files (`program_path`).
    The fresh process proves the file stands alone: it has only torch and the saved module.
    """
    with tempfile.TemporaryDirectory(prefix="rlgen-parity-") as tmp:
        inputs_file, expected_file = Path(tmp) / "inputs.pt", Path(tmp) / "expected.pt"
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        torch.save([a.cpu() for a in args], inputs_file)
        torch.save({k: tuple(t.cpu() for t in v) if isinstance(v, tuple) else v.cpu() for k, v in expected.items()}, expected_file)
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


class ProgramCheck(NamedTuple):
    paths: list[Path]  # the .pt2 files, one per method; empty when unsupported
    parity: dict[str, Parity]  # per method, from one fresh process
    unsupported: str  # why torch.export cannot trace the module, or ""

    def tags(self) -> dict[str, str]:
        """`export/pt2`: the files, or `unsupported: <torch's reason>`."""
        return {"export/pt2": ", ".join(sorted(p.name for p in self.paths)) if self.paths else f"unsupported: {self.unsupported}"[:1000]}


def export_checked_programs(
    module: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...], path: Path, metadata: dict,
    expected: dict[str, Outputs], batch_dims: tuple[int, ...] | None = None,
) -> ProgramCheck:
    """A `.pt2` of each method named in `expected` (forward at `path`, the others beside it), parity-checked in one
    fresh process; where torch.export cannot trace the module, no files and the reason (not an error: a wrong file is)."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        paths = [export_program(module, args, program_path(path, method), metadata, method, batch_dims) for method in expected]
    except ExportUnsupported as err:
        return ProgramCheck([], {}, str(err))
    return ProgramCheck(paths, check_parity(path, inputs, expected), "")


def _parity(got: Outputs, expected: Outputs) -> Parity:
    got, expected = (tuple(got), expected) if isinstance(expected, tuple) else ((got,), (expected,))
    if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected)):
        return Parity(float("inf"), False)
    diff = max(((g.double() - e.double()).abs().max().item() if g.numel() else 0.0) for g, e in zip(got, expected))
    return Parity(diff, all(torch.equal(g, e) for g, e in zip(got, expected)))


def _compare(path: str, inputs_file: str, expected_file: str) -> dict[str, dict]:
    scripted = None if path.endswith(PROGRAM_SUFFIX) else load_scripted(Path(path))[0]
    args = torch.load(inputs_file, weights_only=True)
    results = {}
    for method, expected in torch.load(expected_file, weights_only=True).items():
        run = getattr(scripted, method) if scripted is not None else load_program(program_path(Path(path), method))[0]
        with torch.no_grad():
            results[method] = _parity(run(*args), expected)._asdict()
    return results


if __name__ == "__main__":
    print(json.dumps(_compare(*sys.argv[1:4])))
