"""The one export routine: TorchScript and `.pt2` of a family's module, each parity-checked in a fresh process.

A family says what to export (`ExportSpec`: the module, example inputs, the methods to check, metadata); this
module scripts it, exports its programs where torch.export can trace them, compares both with the eager module
in a fresh process, logs the differences as `export/*` metrics, and refuses a file that does not match.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from rlgen.export.parity import Check, Outputs, Parity, check_files
from rlgen.export.program import ExportUnsupported, export_program, program_path
from rlgen.export.torchscript import script_module

PARITY_LIMIT = 1e-5


class ExportSpec(NamedTuple):
    """What a family exports: a module and how to check it."""

    module: nn.Module  # eval mode, on the CPU
    inputs: tuple[Tensor, ...]  # example arguments of every checked method
    metadata: Mapping[str, Any]  # embedded in each file as rlgen.json, beside family, interface and config
    folder: str = "model"  # artifact folder: <folder>/<stem>.pt, <stem>.pt2 (+ <stem>.<method>.pt2)
    stem: str = "model"
    methods: tuple[str, ...] = ("forward",)  # checked on the TorchScript file
    exact: Mapping[str, str] = {}  # method -> label of outputs that must be identical (actions): export/<label>_match
    program_inputs: tuple[Tensor, ...] | None = (
        None  # examples of the .pt2 programs when they differ (a one-token step)
    )
    program_methods: tuple[str, ...] | None = None  # default: `methods`
    program_metadata: Mapping[str, Any] = {}  # extra metadata of the .pt2 files (their interface)
    batch_dims: tuple[int, ...] | None = None  # each program argument's batch dimension (default 0)
    extra_files: Mapping[str, Path] = {}  # file name -> source, logged beside the module (a vocabulary)


class Exported(NamedTuple):
    files: list[Path]
    metrics: dict[str, float]  # export/max_abs_diff, export/pt2_max_abs_diff, export/<label>_match, ...
    tags: dict[str, str]  # export/pt2: the programs, or why torch.export cannot trace the module


def export_checked(spec: ExportSpec, workdir: Path, name: str, metadata: Mapping[str, Any]) -> Exported:
    """Write the TorchScript file and the `.pt2` programs of `spec` in `workdir` and check them all in one fresh
    process; raise if one differs from the eager module."""
    module = spec.module.eval().cpu()
    meta = {**metadata, **spec.metadata}
    program_inputs = spec.program_inputs or spec.inputs
    methods = spec.program_methods or spec.methods
    with torch.no_grad():
        expected = {method: _call(module, method, spec.inputs) for method in spec.methods}
        program_expected = {method: _call(module, method, program_inputs) for method in methods}
    path = script_module(module, workdir / f"{spec.stem}.pt", meta)
    checks: list[Check] = [(path, spec.inputs, expected)]
    program = workdir / f"{spec.stem}.pt2"
    try:
        meta_pt2 = {**meta, **spec.program_metadata}
        programs = [
            export_program(module, program_inputs, program_path(program, m), meta_pt2, m, spec.batch_dims)
            for m in methods
        ]
        checks.append((program, program_inputs, program_expected))
        tags = {"export/pt2": ", ".join(sorted(p.name for p in programs))}
    except ExportUnsupported as err:  # not an error: a wrong file is
        programs, tags = [], {"export/pt2": f"unsupported: {err}"[:1000]}
    parities = check_files(checks)
    metrics = _require("TorchScript", "export/", name, spec, parities[0])
    if programs:
        metrics |= _require(".pt2", "export/pt2_", name, spec, parities[1])
    extra = [Path(shutil.copy(source, workdir / file)) for file, source in spec.extra_files.items()]
    return Exported([path, *programs, *extra], metrics, tags)


def _call(module: nn.Module, method: str, inputs: tuple[Tensor, ...]) -> Outputs:
    result: Outputs = getattr(module, method)(*inputs)
    return result


def _require(kind: str, prefix: str, name: str, spec: ExportSpec, parity: dict[str, Parity]) -> dict[str, float]:
    """The parity metrics of one kind of file; RuntimeError when it does not match the eager module."""
    diff = max(p.max_abs_diff for p in parity.values())
    metrics = {f"{prefix}max_abs_diff": diff}
    equal = {label: parity[method].outputs_equal for method, label in spec.exact.items() if method in parity}
    metrics |= {f"{prefix}{label}_match": float(same) for label, same in equal.items()}
    if diff > PARITY_LIMIT or not all(equal.values()):
        identical = "".join(f", {label} identical: {same}" for label, same in equal.items())
        raise RuntimeError(
            f"{kind} export of {name} does not match the eager model: max |difference| = {diff:.3g} "
            f"(limit {PARITY_LIMIT:g}){identical}"
        )
    return metrics
