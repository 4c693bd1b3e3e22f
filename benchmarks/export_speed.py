"""Inference speed of every exported module: latency at batch 1 and throughput at a large batch, the TorchScript
file (saved and loaded as the flows do it, tasks.export) against the eager module it was made from, and the
`.pt2` program (torch.export) when tasks.export offers `export_program`.

The modules are built directly with the tasks' builders and default configs (untrained weights: speed does not
depend on them), so no flow runs. Both runtimes are called under torch.no_grad(), as `rlgen sample/play/generate`.

    python -m benchmarks.export_speed [--seconds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from benchmarks.common import RESULTS, Figure, Options, fmt, print_table, save, time_for
from models import dqn, gan, langevin, lm, vae
from models.common import resolve_device
from rlgen.config import DescriptorConfig, DQNConfig, GANConfig, GeneratorConfig, LMConfig, VAEConfig
from tasks import export
from tasks import gan as gan_tasks
from tasks import langevin as langevin_tasks
from tasks import lm as lm_tasks
from tasks import vae as vae_tasks
from tasks.envs import describe_env

VOCAB = {"char": 65, "word": 18_328}  # the offline Tiny Shakespeare and WikiText-2 vocabularies
LARGE_BATCH = {"lm": 64}  # streams stepped at once; every other module: 256 items


class Exported(NamedTuple):
    module: nn.Module  # what the flow exports, in eval mode
    inputs: Callable[[int, torch.device], tuple[Tensor, ...]]  # batch size -> the forward's arguments
    unit: str  # what one batch item is
    batch_dims: tuple[int, ...] | None = None  # each argument's batch dimension for torch.export (default 0)


def image_inputs(latent_dim: int) -> Callable[[int, torch.device], tuple[Tensor, ...]]:
    """(z, y) of a (z, y) -> images module."""
    return lambda b, device: (torch.randn(b, latent_dim, device=device), torch.arange(b, device=device) % 10)


def lm_inputs(module: lm.LMExport) -> Callable[[int, torch.device], tuple[Tensor, ...]]:
    """One token per stream and the zero state: one generation step."""
    return lambda b, device: (
        torch.zeros(b, 1, dtype=torch.long, device=device),
        *(s.to(device) for s in module.initial_state(b)),
    )


def exported_modules() -> dict[str, Exported]:
    """Every module a flow exports, from the tasks' own builders and wrappers."""
    dqn_cfg = DQNConfig()
    spec = describe_env(dqn_cfg)
    modules = {
        "dqn policy": Exported(
            dqn.GreedyPolicy(dqn.build_q_network(spec.obs_shape, spec.n_actions, dqn_cfg.hidden)),
            lambda b, device: (torch.randn(b, *spec.obs_shape, device=device),),
            "observations",
        )
    }
    for variant in ("vae", "conv-vae", "cvae"):
        cfg = VAEConfig(variant=variant)
        modules[f"{variant} decoder"] = Exported(
            vae.VAEDecoder(vae_tasks.build_model(cfg)), image_inputs(cfg.latent_dim), "images"
        )
    for variant in ("dcgan", "cgan"):
        cfg = GANConfig(variant=variant)
        modules[f"{variant} generator"] = Exported(
            gan.GeneratorExport(gan_tasks.build_models(cfg)[0]), image_inputs(cfg.latent_dim), "images"
        )
    d_cfg, g_cfg = DescriptorConfig(), GeneratorConfig()
    modules["descriptor energy"] = Exported(
        langevin.DescriptorEnergy(langevin_tasks.build_descriptor(d_cfg), d_cfg.ref_sigma),
        lambda b, device: (torch.rand(b, 1, 28, 28, device=device),),
        "images",
    )
    modules["generator/coop generator"] = Exported(
        gan.GeneratorExport(langevin_tasks.build_generator(g_cfg)), image_inputs(g_cfg.latent_dim), "images"
    )
    for level in ("char", "word"):
        module = lm.LMExport(lm_tasks.build_model(LMConfig(level=level), VOCAB[level]))
        modules[f"lm-{level} step"] = Exported(
            module, lm_inputs(module), "tokens", batch_dims=(0, 1, 1)
        )  # tokens (B, 1), h and c (L, B, H)
    return {name: e._replace(module=e.module.eval()) for name, e in modules.items()}


def program(exported: Exported, batch: int, path: Path) -> tuple[Callable | None, str]:
    """The `.pt2` program (tasks.export.export_program, as the flows save it) loaded back, and "dynamic" or the one
    batch size it runs at; (None, why) when tasks.export has no .pt2 path or torch.export cannot trace the module.
    Exported on the CPU and run there (tasks.export.load_program loads on the CPU)."""
    export_program = getattr(export, "export_program", None)
    if export_program is None:
        return None, "tasks.export has no export_program"
    try:
        saved = export_program(
            exported.module, exported.inputs(batch, torch.device("cpu")), path, {}, batch_dims=exported.batch_dims
        )
    except export.ExportUnsupported as err:
        return None, str(err)
    module, metadata = export.load_program(saved)
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
    scripted, _ = export.load_scripted(
        export.script_module(exported.module, stem.with_suffix(".pt"), {"benchmark": name}), device
    )
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


def export_figures(seconds: float, device: torch.device) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory(prefix="rlgen-bench-export-") as tmp:
        for name, exported in exported_modules().items():
            figures += module_figures(name, exported, seconds, device, Path(tmp))
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's export figures: 1 s per runtime and batch with --quick, 5 s otherwise."""
    return export_figures(1.0 if opts.quick else 5.0, opts.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per runtime and batch size")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = export_figures(args.seconds, resolve_device(args.device))
    print_table(rows, "exported modules: inference speed")
    save(rows, RESULTS / "export_speed.json")


if __name__ == "__main__":
    main()
