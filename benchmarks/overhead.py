"""Orchestration overhead: the same MLP VAE training (offline MNIST split, a max_steps budget) run

  plain  as a plain function: its training step in the whole-tensor loop (models/image_fit.py), nothing tracked;
  task   the same function as a Prefect task inside a minimal flow;
  flow   the vae flow itself (flows/vae.py): MLflow runs, metrics, per-epoch validation and sample grid, checkpoint,
         learning curves, evaluation (small settings: 1,000 FID samples, IW-NLL on 100 images with k = 10),
         TorchScript export and its parity check, registration and promotion;
  cli    `rlgen run vae` in a fresh process: Python start-up, imports and Prefect's ephemeral server on top of flow.

Each mode's wall time at two budgets, N and 2N steps, gives its fixed cost and its cost per step
(T = fixed + per_step * steps); the overhead is what a mode adds to plain, also as a share of the wall time of
a training that takes 2 minutes when plain (target: <= 5%). The cli runs once, at N steps, and is assumed to cost
per step what the in-process flow does. In-process modes share one Prefect test server (started and warmed up
before any timing) and one throwaway RLGEN_HOME, whose LeNet evaluator is trained once, in the warm-up.

    python -m benchmarks.overhead [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from prefect import flow, task

from benchmarks.common import DATA, RESULTS, Figure, Options, env, print_table, save
from benchmarks.image_speed import build_step
from models.common import seed_everything
from models.image_fit import fit_images
from rlgen.config import VAEConfig
from tasks.image_data import load_prepared

OVERRIDES: dict[str, Any] = {  # the same run in every mode: a budget in steps and a small evaluation
    "variant": "vae", "data_dir": str(DATA / "mnist" / "raw"), "epochs": 10_000,
    "fid_samples": 1000, "iw_images": 100, "iw_samples": 10, "lenet_epochs": 1,
}
TWO_MINUTES = 120.0


def config(steps: int) -> VAEConfig:
    return VAEConfig(**OVERRIDES, max_steps=steps)


def plain(cfg: VAEConfig, prepared_path: Path) -> int:
    """The VAE's training as a plain function: load the prepared tensors, build, train `max_steps` batches; returns the steps."""
    seed_everything(cfg.seed)
    data = load_prepared(prepared_path)
    step = build_step("vae", data["train_images"])
    return fit_images(step.fn, data["train_images"], data["train_labels"], cfg.batch_size, cfg.epochs, lambda s, m: None, max_steps=cfg.max_steps).steps


@task(name="overhead-train")
def plain_task(cfg: VAEConfig, prepared_path: Path) -> int:
    return plain(cfg, prepared_path)


@flow(name="overhead-minimal")
def minimal_flow(cfg: VAEConfig, prepared_path: Path) -> int:
    """Nothing but the training task."""
    return plain_task(cfg, prepared_path)


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Wall seconds of fn(*args, **kwargs), and its result."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def cli(steps: int, home: Path) -> tuple[float, dict]:
    """`rlgen run vae` in a fresh process against the same store; Prefect in its ephemeral mode (unless PREFECT_API_URL is set)."""
    sets = [arg for key, value in {**OVERRIDES, "max_steps": steps}.items() for arg in ("--set", f"{key}={value}")]
    result_file = home / "cli-result.json"
    env_vars = {**os.environ, "RLGEN_HOME": str(home), "RLGEN_RESULT_JSON": str(result_file), "PREFECT_HOME": str(home / "prefect")}
    seconds, _ = timed(subprocess.run, [str(Path(sys.executable).with_name("rlgen")), "run", "vae", *sets], env=env_vars, check=True, stdout=subprocess.DEVNULL)
    return seconds, json.loads(result_file.read_text())


def warm_prefect_home(home: Path) -> None:
    """Create the ephemeral Prefect database the cli runs will use, so that no timed run pays for its creation."""
    code = "import rlgen.settings; from prefect import flow; flow(name='warm-up')(lambda: None)()"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PREFECT_HOME": str(home / "prefect")}, check=True, capture_output=True)


def line(points: dict[int, float]) -> tuple[float, float]:
    """(fixed seconds, seconds per step) through two (steps, seconds) points."""
    (n1, t1), (n2, t2) = sorted(points.items())
    per_step = (t2 - t1) / (n2 - n1)
    return t1 - per_step * n1, per_step


def measure(n: int) -> dict[str, dict]:
    """Wall times of every mode at n and 2n steps (the cli at n only), in a throwaway store and Prefect test server."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.vae import vae_flow
    from tasks.images import prepare_data

    walls: dict[str, dict[int, float]] = {"plain": {}, "task": {}, "flow": {}, "cli": {}}
    train_seconds: dict[int, float] = {}
    prefect_logger = logging.getLogger("prefect")
    level = prefect_logger.level
    prefect_logger.setLevel(logging.WARNING)  # no run-by-run INFO lines in the middle of the suite's output
    with tempfile.TemporaryDirectory(prefix="rlgen-bench-overhead-") as tmp, env(RLGEN_HOME=tmp), prefect_test_harness(server_startup_timeout=180):
        home = Path(tmp)
        prepared = prepare_data(config(n))
        vae_flow(config(1))  # warm-up: first-call costs, and the LeNet evaluator (trained once per store)
        minimal_flow(config(1), prepared.path)
        for steps in (n, 2 * n):
            cfg = config(steps)
            walls["plain"][steps], _ = timed(plain, cfg, prepared.path)
            walls["task"][steps], _ = timed(minimal_flow, cfg, prepared.path)
            walls["flow"][steps], result = timed(vae_flow, cfg)
            train_seconds[steps] = result["train/seconds"]
        warm_prefect_home(home)
        walls["cli"][n], result = cli(n, home)
    prefect_logger.setLevel(level)
    return {"walls": walls, "flow_train_seconds": train_seconds, "cli_train_seconds": result["train/seconds"]}


def overhead_figures(n: int) -> list[Figure]:
    """Fixed and per-step cost of each mode over plain, and its share of a 2-minute training's wall time."""
    measured = measure(n)
    walls = measured["walls"]
    fits = {mode: line(points) for mode, points in walls.items() if len(points) == 2}
    flow_per_step = fits["flow"][1]
    fits["cli"] = (walls["cli"][n] - flow_per_step * n, flow_per_step)
    base_fixed, base_step = fits["plain"]
    steps_2min = TWO_MINUTES / base_step
    detail = f"MLP VAE, budgets {n} and {2 * n} steps"
    figures = [
        Figure("overhead", "plain: fixed", base_fixed, "s", f"{detail}; data load and build", extra={"walls": walls["plain"]}),
        Figure("overhead", "plain: per step", base_step * 1e3, "ms", f"{detail}; a 2-minute training is {steps_2min:,.0f} steps"),
    ]
    for mode in ("task", "flow", "cli"):
        fixed, per_step = fits[mode][0] - base_fixed, fits[mode][1] - base_step
        added = fixed + per_step * steps_2min
        extra = {"walls": walls[mode], "fixed_s": fits[mode][0], "per_step_s": fits[mode][1]}
        figures += [
            Figure("overhead", f"{mode}: fixed overhead", fixed, "s", f"{detail}; over plain", extra=extra),
            Figure("overhead", f"{mode}: per-step overhead", per_step * 1e3, "ms", f"{detail}; over plain" + ("; assumed = flow's" if mode == "cli" else "")),
            Figure("overhead", f"{mode}: share of a 2-minute training", 100 * added / (TWO_MINUTES + added), "%", f"{added:.1f} s added to {TWO_MINUTES:.0f} s; target <= 5%"),
        ]
    inside = line(measured["flow_train_seconds"])
    figures.append(Figure("overhead", "flow: inside training, per step", inside[1] * 1e3, "ms",
                          "the flow's own train/seconds (tracking, per-epoch validation and grids included); plain's per step is the floor",
                          extra={"train_seconds": measured["flow_train_seconds"]}))
    figures.append(Figure("overhead", "flow: around training", walls["flow"][n] - measured["flow_train_seconds"][n], "s",
                          f"at {n} steps: data prep, data report, evaluator lookup, evaluation, export + parity, registry"))
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's overhead figures: budgets of 100 and 200 steps with --quick, 1,000 and 2,000 otherwise (CPU)."""
    return overhead_figures(100 if opts.quick else 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="the smaller budget N (2N is measured too)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = overhead_figures(args.steps)
    print_table(rows, "orchestration overhead")
    save(rows, RESULTS / "overhead.json")


if __name__ == "__main__":
    main()
