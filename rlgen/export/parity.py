"""The parity check: an exported file, loaded in a fresh process with nothing but torch, against the eager module.

`python -m rlgen.export.parity MODULE INPUTS EXPECTED` is the fresh process: it loads the scripted module
(or the `.pt2` programs), runs it on the saved inputs and prints the comparison as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from rlgen.export.program import (
    PROGRAM_SUFFIX,
    ExportUnsupported,
    export_program,
    load_program,
    program_path,
)
from rlgen.export.torchscript import load_scripted


class Parity(NamedTuple):
    max_abs_diff: float
    outputs_equal: bool  # for integer outputs (actions, tokens): exactly equal


Outputs = torch.Tensor | tuple[torch.Tensor, ...]  # what a method returns


Check = tuple[Path, "torch.Tensor | tuple[torch.Tensor, ...]", dict[str, Outputs]]  # file, inputs, expected by method


def check_parity(
    path: Path, inputs: torch.Tensor | tuple[torch.Tensor, ...], expected: dict[str, Outputs]
) -> dict[str, Parity]:
    """Run each method named in `expected` on `inputs` (one tensor or a tuple of arguments) in a fresh python
    process and compare (a tuple of outputs by its largest difference).

    `path` is a TorchScript file, or a `.pt2` whose methods lie in their own files (`program_path`).
    The fresh process proves the file stands alone: it has only torch and the saved module.
    """
    return check_files([(path, inputs, expected)])[0]


def check_files(checks: list[Check]) -> list[dict[str, Parity]]:
    """`check_parity` of several files in one fresh process (its start-up, torch's import, is most of the cost)."""
    with tempfile.TemporaryDirectory(prefix="rlgen-parity-") as tmp:
        manifest = []
        for i, (path, inputs, expected) in enumerate(checks):
            inputs_file, expected_file = Path(tmp) / f"inputs{i}.pt", Path(tmp) / f"expected{i}.pt"
            args = inputs if isinstance(inputs, tuple) else (inputs,)
            torch.save([a.cpu() for a in args], inputs_file)
            torch.save(
                {k: tuple(t.cpu() for t in v) if isinstance(v, tuple) else v.cpu() for k, v in expected.items()},
                expected_file,
            )
            manifest.append([str(path), str(inputs_file), str(expected_file)])
        (Path(tmp) / "checks.json").write_text(json.dumps(manifest))
        command = [sys.executable, "-m", "rlgen.export.parity", str(Path(tmp) / "checks.json")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        files = ", ".join(str(path) for path, _, _ in checks)
        raise RuntimeError(f"the parity check of {files} failed in its fresh process:\n{done.stderr[-2000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return [{method: Parity(**values) for method, values in result.items()} for result in results]


class ProgramCheck(NamedTuple):
    paths: list[Path]  # the .pt2 files, one per method; empty when unsupported
    parity: dict[str, Parity]  # per method, from one fresh process
    unsupported: str  # why torch.export cannot trace the module, or ""

    def tags(self) -> dict[str, str]:
        """`export/pt2`: the files, or `unsupported: <torch's reason>`."""
        return {
            "export/pt2": ", ".join(sorted(p.name for p in self.paths))
            if self.paths
            else f"unsupported: {self.unsupported}"[:1000]
        }


def export_checked_programs(
    module: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    path: Path,
    metadata: dict,
    expected: dict[str, Outputs],
    batch_dims: tuple[int, ...] | None = None,
) -> ProgramCheck:
    """A `.pt2` of each method named in `expected` (forward at `path`, the others beside it), parity-checked in one
    fresh process; where torch.export cannot trace the module, no files and the reason (not an error: a wrong file
    is)."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        paths = [
            export_program(module, args, program_path(path, method), metadata, method, batch_dims)
            for method in expected
        ]
    except ExportUnsupported as err:
        return ProgramCheck([], {}, str(err))
    return ProgramCheck(paths, check_parity(path, inputs, expected), "")


def _parity(outputs: Outputs, reference: Outputs) -> Parity:
    got = tuple(outputs) if isinstance(outputs, tuple) else (outputs,)
    expected = reference if isinstance(reference, tuple) else (reference,)
    if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected, strict=True)):
        return Parity(float("inf"), False)
    diff = max(
        ((g.double() - e.double()).abs().max().item() if g.numel() else 0.0) for g, e in zip(got, expected, strict=True)
    )
    return Parity(diff, all(torch.equal(g, e) for g, e in zip(got, expected, strict=True)))


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
    print(json.dumps([_compare(*check) for check in json.loads(Path(sys.argv[1]).read_text())]))
