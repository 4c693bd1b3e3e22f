"""`python -m benchmarks`: every benchmark in turn, one table, one JSON file (benchmarks/results/suite.json).

    python -m benchmarks --quick                      # the speed figures on small budgets: under 10 minutes on 2 cores
    python -m benchmarks                              # full: longer budgets, plus quality (image_quality,
                                                      # lm_quality, DQN over 5 seeds) and the pipeline's concurrency
                                                      # (an hour or more)
    python -m benchmarks --quick --only overhead lm   # some of them
    python -m benchmarks --device cuda --json /tmp/gpu.json

Each figure records the machine (CPU, torch threads, device, torch version) and this command. A benchmark that
fails is reported in the table and the JSON; the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import RESULTS, Figure, Options, print_table, save
from benchmarks.machine import describe
from models.common import resolve_device

BENCHMARKS: dict[str, tuple[str, bool]] = {  # name: (module:function taking Options, part of --quick)
    "dqn": ("benchmarks.dqn_cartpole:figures", True),  # env steps/s, steps and seconds to solve CartPole-v1
    "images": ("benchmarks.image_speed:figures", True),  # training images/s of the eight image models
    "langevin": ("benchmarks.image_speed:langevin_suite_figures", True),  # Langevin steps/s
    "lm": ("benchmarks.lm:figures", True),  # training tokens/s and characters/s
    "export": ("benchmarks.export_speed:figures", True),  # TorchScript (and .pt2) against eager
    "threads": ("benchmarks.threads:figures", True),  # 1 vs 2 intra-op threads, one and two processes
    "overhead": ("benchmarks.overhead:figures", True),  # plain function vs Prefect task vs flow vs CLI
    "image_quality": ("benchmarks.image_quality:figures", False),  # every image flow at its default budget
    "lm_quality": ("benchmarks.lm:quality_figures", False),  # the LM flows at their default budgets
    "pipeline": ("benchmarks.pipeline:figures", False),  # `rlgen run pipeline`, concurrency 2 vs 1
}


def load(name: str) -> Callable[[Options], list[Figure]]:
    """Import a benchmark only when it runs (prefect, gymnasium and mlflow are slow to import)."""
    module, _, function = BENCHMARKS[name][0].partition(":")
    return getattr(importlib.import_module(module), function)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small budgets, speed figures only (under 10 minutes on 2 cores)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME", help=f"run these only: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--device", default="cpu", help="training/inference device: cpu, cuda, auto (threads and overhead: CPU)"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "suite.json", help="where to write the figures")
    args = parser.parse_args()

    opts = Options(args.quick, resolve_device(args.device))
    names = args.only or [name for name, (_, quick) in BENCHMARKS.items() if quick or not args.quick]
    figures: list[Figure] = []
    seconds: dict[str, float] = {}
    failed: list[str] = []
    load_before = os.getloadavg()[0]  # other work on the machine contaminates every timing: recorded beside the figures
    started = time.perf_counter()
    for name in names:
        print(f"--- {name}", flush=True)
        began = time.perf_counter()
        try:
            figures += load(name)(opts)
        except Exception as err:
            traceback.print_exc()
            failed.append(name)
            figures.append(Figure(name, "FAILED", None, "", f"{err.__class__.__name__}: {err}"[:300], str(opts.device)))
        seconds[name] = round(time.perf_counter() - began, 1)
        print(f"--- {name}: {seconds[name]:.0f} s", flush=True)
    total = time.perf_counter() - started

    machine = describe(opts.device)
    mode = "quick" if args.quick else "full"
    print_table(
        figures,
        f"rlgen benchmarks ({mode}, {total / 60:.1f} min): {machine['cpu']}, torch {machine['torch']}, "
        f"{machine['command']}",
    )
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) before: {load_before:.2f}, after: {load_after:.2f} (the suite itself adds about 1-2)")
    path = save(
        figures,
        args.json,
        mode=mode,
        seconds=seconds,
        total_seconds=round(total, 1),
        failed=failed,
        load_average={"before": load_before, "after": load_after},
    )
    print(f"wrote {path}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
