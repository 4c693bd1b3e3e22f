"""`.pt2` files: torch.export programs of a module's methods, batch dimension dynamic where torch can keep it."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from rlgen.export.torchscript import METADATA_FILE

PROGRAM_SUFFIX = ".pt2"


_EXPORT_LOCK = (
    threading.Lock()
)  # torch.export traces with process-wide state; the pipeline exports from several threads


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
    """Silence torch.export's notice that nn.LSTM/GRU reassign their flat weights while traced (harmless: parity
    checks it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights", category=UserWarning)
        yield


def export_program(
    module: nn.Module,
    example_args: tuple[torch.Tensor, ...],
    path: Path,
    metadata: dict,
    method: str = "forward",
    batch_dims: tuple[int, ...] | None = None,
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
    size: str | int
    with _EXPORT_LOCK, _quiet_export():
        try:  # _Method's forward takes *args: its shapes nest in one more tuple
            program, size = (
                torch.export.export(
                    target, example_args, dynamic_shapes=dynamic if method == "forward" else (dynamic,)
                ),
                "dynamic",
            )
        except Exception:  # e.g. code that fixes the batch size: export at the examples' size
            try:
                program, size = (
                    torch.export.export(target, example_args),
                    example_args[0].size(batch_dims[0] if batch_dims else 0),
                )
            except (
                Exception
            ) as err:  # tracing failed: a construct torch.export does not support (the module runs eagerly)
                raise ExportUnsupported(
                    f"torch.export cannot trace {type(module).__name__}.{method}: {_first_line(err)}"
                ) from err
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(
        program, path, extra_files={METADATA_FILE: json.dumps({**metadata, "method": method, "batch": size})}
    )
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
        raise ValueError(
            f"{path} is not a loadable .pt2 ExportedProgram ({_first_line(err)}); pass the file `rlgen run` "
            "exported, and download it again if it was damaged"
        ) from None
    return program.module(), json.loads(extra[METADATA_FILE] or "{}")
