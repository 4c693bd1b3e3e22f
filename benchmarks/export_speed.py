"""Inference speed of every exported module: latency at batch 1 and throughput at a large batch, the TorchScript
file (saved and loaded as the flows do it, rlgen.export.torchscript) against the eager module it was made from, and the
`.pt2` program (rlgen.export.program's torch.export).

Each module is what its family's `export` hands the flow's export step (rlgen/families/<family>/train.py), built
over freshly initialised networks (the family's `build`) with its default config and its data prepared as the flow
prepares it (untrained weights: speed does not depend on them), so no flow runs. The inputs are the family's own
example inputs, repeated along their batch dimension to each batch size. Both runtimes are called under
torch.no_grad(), as `rlgen sample/play/generate`.

    python -m benchmarks.export_speed [--seconds 3] [--device cpu] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from benchmarks.common import DATA, RESULTS, Figure, Options, fmt, print_table, save, scratch_home, time_for
from models.common import resolve_device
from rlgen import steps
from rlgen.config.base import TrainConfig
from rlgen.export.checked import ExportSpec
from rlgen.export.program import ExportUnsupported, export_program, load_program
from rlgen.export.torchscript import load_scripted, script_module
from rlgen.families.descriptor import DescriptorConfig
from rlgen.families.dqn import DQNConfig
from rlgen.families.gan import GANConfig
from rlgen.families.generator import GeneratorConfig
from rlgen.families.lm import LMConfig
from rlgen.families.vae import VAEConfig
from rlgen.family import Loaded
from rlgen.registry import family_of

LARGE_BATCH = {"lm": 64}  # streams stepped at once; every other module: 256 items


class Exported(NamedTuple):
    module: nn.Module  # what the flow exports, in eval mode
    inputs: Callable[[int, torch.device], tuple[Tensor, ...]]  # batch size -> the forward's arguments
    unit: str  # what one batch item is
    batch_dims: tuple[int, ...] | None = None  # each argument's batch dimension for torch.export (default 0)


def batched(examples: tuple[Tensor, ...], dims: tuple[int, ...] | None) -> Callable[[int, torch.device], tuple]:
    """The example arguments at any batch size: their items repeated (or cut) along each one's batch dimension."""
    dims = dims or (0,) * len(examples)

    def inputs(batch: int, device: torch.device) -> tuple[Tensor, ...]:
        return tuple(
            x.index_select(dim, torch.arange(batch) % x.size(dim)).contiguous().to(device)
            for x, dim in zip(examples, dims, strict=True)
        )

    return inputs


def family_export(cfg: TrainConfig, unit: str) -> Exported:
    """What `cfg`'s family exports, as the flow's export step gets it (`export` over the `build` of its prepared
    data), with fresh weights: the forward that `rlgen play/sample/generate/score` calls, on the programs' inputs."""
    impl = family_of(cfg).impl()
    prepared = steps.prepare(cfg)
    spec: ExportSpec = impl.export(cfg, prepared, Loaded(impl.build(cfg, prepared), {}, 0))
    examples = spec.program_inputs or spec.inputs  # an LM's one-token step, else the checked methods' examples
    return Exported(spec.module.eval(), batched(examples, spec.batch_dims), unit, spec.batch_dims)


def exported_modules(data_root: Path = DATA) -> dict[str, Exported]:
    """Every module a flow exports, from the families' own builders and exports (data prepared under the current
    rlgen home)."""
    mnist = {"data_dir": str(data_root / "mnist" / "raw"), "device": "cpu"}
    modules = {"dqn policy": family_export(DQNConfig(device="cpu"), "observations")}
    for variant in ("vae", "conv-vae", "cvae"):
        modules[f"{variant} decoder"] = family_export(VAEConfig(variant=variant, **mnist), "images")
    for variant in ("dcgan", "cgan"):
        modules[f"{variant} generator"] = family_export(GANConfig(variant=variant, **mnist), "images")
    modules["descriptor energy"] = family_export(DescriptorConfig(**mnist), "images")
    modules["generator/coop generator"] = family_export(GeneratorConfig(**mnist), "images")  # the same architecture
    corpora = {"char": data_root / "tinyshakespeare" / "input.txt", "word": data_root / "wikitext-2"}
    for level, path in corpora.items():  # tokens (B, 1), h and c (L, B, H): one generation step
        cfg = LMConfig(level=level, corpus_path=str(path.resolve()), device="cpu")
        modules[f"lm-{level} step"] = family_export(cfg, "tokens")
    return modules


def program(exported: Exported, batch: int, path: Path) -> tuple[Callable | None, str]:
    """The `.pt2` program (rlgen.export.program.export_program, as the flows save it) loaded back, and "dynamic" or
    the one batch size it runs at; (None, why) when torch.export cannot trace the module. Exported on the CPU and run
    there (load_program loads on the CPU)."""
    try:
        saved = export_program(
            exported.module, exported.inputs(batch, torch.device("cpu")), path, {}, batch_dims=exported.batch_dims
        )
    except ExportUnsupported as err:
        return None, str(err)
    module, metadata = load_program(saved)
    return module, str(metadata.get("batch", "dynamic"))


def measure(fn: Callable, inputs: tuple[Tensor, ...], seconds: float, device: torch.device) -> float:
    """Median seconds per call of fn(*inputs), without autograd, after 5 warm-up calls (TorchScript profiles its
    first)."""
    with torch.no_grad():
        return time_for(lambda: fn(*inputs), seconds, warmup=5, min_calls=10, device=device).median


def module_figures(name: str, exported: Exported, seconds: float, device: torch.device, tmp: Path) -> list[Figure]:
    """Latency at batch 1 and throughput at the large batch of each runtime; the TorchScript figure carries the
    others."""
    stem = tmp / name.replace(" ", "_").replace("/", "_")
    scripted, _ = load_scripted(script_module(exported.module, stem.with_suffix(".pt"), {"benchmark": name}), device)
    fns: dict[str, Callable] = {
        "eager": exported.module.to(device),
        "torchscript": scripted,
    }  # script_module moved it to the CPU
    pt2, pt2_batch = (
        program(exported, 2, stem.with_suffix(".pt2")) if device.type == "cpu" else (None, "measured on the CPU only")
    )
    large = LARGE_BATCH.get(name.split("-")[0], 256)
    results: dict[int, dict[str, float]] = {}  # batch -> runtime -> seconds per call
    for batch in (1, large):
        batch_fns = dict(fns)
        if pt2 is not None:  # a program fixed at one batch size is exported again at this one
            batch_fns["pt2"] = (
                pt2
                if pt2_batch == "dynamic"
                else program(exported, batch, stem.with_name(f"{stem.name}-{batch}.pt2"))[0]
            )
        inputs = exported.inputs(batch, device)
        results[batch] = {runtime: measure(fn, inputs, seconds, device) for runtime, fn in batch_fns.items()}
    latency = {r: t * 1e3 for r, t in results[1].items()}  # ms
    throughput = {r: large / t for r, t in results[large].items()}  # items/s
    note = "" if pt2 is not None else f"; no pt2: {pt2_batch}"

    def others(values: dict[str, float]) -> str:
        return ", ".join(f"{r} {fmt(v)}" for r, v in values.items() if r != "torchscript")

    return [
        Figure(
            "export",
            f"{name}, batch 1",
            latency["torchscript"],
            "ms (median)",
            f"TorchScript; {others(latency)} ms; {latency['eager'] / latency['torchscript']:.2f}x eager{note}",
            str(device),
            extra={"ms": latency},
        ),
        Figure(
            "export",
            f"{name}, batch {large}",
            throughput["torchscript"],
            f"{exported.unit}/s",
            f"TorchScript; {others(throughput)}; {throughput['torchscript'] / throughput['eager']:.2f}x eager{note}",
            str(device),
            extra={f"{exported.unit}/s": throughput, "pt2_batch": pt2_batch},
        ),
    ]


def export_figures(seconds: float, device: torch.device, data_root: Path = DATA) -> list[Figure]:
    figures = []
    with scratch_home("rlgen-bench-export-"), tempfile.TemporaryDirectory(prefix="rlgen-bench-export-") as tmp:
        for name, exported in exported_modules(data_root).items():
            figures += module_figures(name, exported, seconds, device, Path(tmp))
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's export figures: 1 s per runtime and batch with --quick, 5 s otherwise."""
    return export_figures(1.0 if opts.quick else 5.0, opts.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per runtime and batch size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", type=Path, default=DATA, help="the offline datasets (MNIST, the two corpora)")
    args = parser.parse_args()
    rows = export_figures(args.seconds, resolve_device(args.device), args.data_root)
    print_table(rows, "exported modules: inference speed")
    save(rows, RESULTS / "export_speed.json")


if __name__ == "__main__":
    main()
