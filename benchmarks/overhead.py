"""Orchestration overhead: the same MLP VAE training (offline MNIST split, a max_steps budget) run

  plain  as a plain function: the VAE family's own trainer (rlgen/families/vae/train.py, built as the flow builds
         it) stepped until it is done, its end-of-epoch reports computed, nothing tracked;
  task   the same function as a Prefect task inside a minimal flow;
  flow   the vae flow itself (flows/models.py): MLflow runs, the same trainer under the training driver
         (rlgen/training/driver.py: NaN checks, metrics, the per-epoch validation and sample grid recorded,
         checkpoints), learning curves, evaluation (small settings: 1,000 FID samples, IW-NLL on 100 images with
         k = 10), export and its parity checks, registration and promotion;
  cli    `rlgen run vae` in a fresh process: Python start-up, imports and Prefect's ephemeral server on top of flow.

Per step: the training loop's own clock (the driver's, in the flow) at the larger budget (2N steps, fastest of the
repeats) against plain's at the same budget. The per-epoch validation and sample grid are the trainer's (plain computes
them too), so the flow's per-step cost is the driver's recording: NaN checks, metrics, the grids written to the run,
and checkpoints. Fixed: what a mode spends outside its training loop (wall minus loop), over plain's, averaged over
both budgets. The flow's fixed cost is split by Prefect's own record of its task runs: the time each task ran
(data prep, evaluator, training set-up, evaluation, export and parity, registry, promotion) and the rest, the flow
engine and the MLflow runs around the tasks: orchestration proper. Each cost is also a share of the wall time of a
training that takes 2 minutes as a plain function (target: <= 5%). The cli runs once, at N steps, with the flow's
per-step cost. In-process modes share one Prefect test server and one throwaway RLGEN_HOME, warmed up (first-call
costs, the LeNet evaluator) before any timing; the cli's ephemeral Prefect database is created before it too.

    python -m benchmarks.overhead [--steps 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from prefect import flow, task

from benchmarks.common import (
    DATA,
    RESULTS,
    Figure,
    Options,
    build_trainer,
    print_table,
    run_quietly,
    save,
    scratch_home,
)
from rlgen.data.images import PreparedData
from rlgen.families.vae import VAEConfig

OVERRIDES: dict[str, Any] = {  # the same run in every mode: a budget in steps and a small evaluation
    "variant": "vae",
    "data_dir": str(DATA / "mnist" / "raw"),
    "epochs": 10_000,
    "fid_samples": 1000,
    "iw_images": 100,
    "iw_samples": 10,
    "lenet_epochs": 1,
}
TWO_MINUTES = 120.0
MODES = ("plain", "task", "flow", "cli")


def config(steps: int) -> VAEConfig:
    return VAEConfig(**OVERRIDES, max_steps=steps)


def plain(cfg: VAEConfig, prepared: PreparedData) -> float:
    """The VAE's training as a plain function: its trainer over the prepared tensors, as the flow builds it, stepped
    `max_steps` batches (with its reports) and finished; returns the training loop's seconds."""
    training = build_trainer(cfg, prepared)
    seconds = training.run()
    training.trainer.finish()
    return seconds


@task(name="overhead-train")
def plain_task(cfg: VAEConfig, prepared: PreparedData) -> float:
    return plain(cfg, prepared)


@flow(name="overhead-minimal")
def minimal_flow(cfg: VAEConfig, prepared: PreparedData) -> float:
    """Nothing but the training task."""
    return plain_task(cfg, prepared)


class Run(NamedTuple):
    wall: float  # seconds, the whole call
    train: float  # seconds of the training loop inside it
    tasks: dict[str, float] | None = None  # flow: seconds each of its Prefect tasks ran, by task name


def task_seconds(flow_name: str = "vae") -> dict[str, float]:
    """Seconds each task of the latest `flow_name` run spent running, summed by task name: Prefect's own record."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (latest,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=FlowRunSort.START_TIME_DESC, limit=1
        )
        for _ in range(50):  # task runs reach the API through events: wait until every one has ended
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id])))
            if runs and all(run.end_time is not None for run in runs):
                break
            time.sleep(0.2)
    seconds: dict[str, float] = {}
    for run in runs:
        name = run.name.removesuffix(f"-{flow_name}")  # the model flow's task runs are "<task>-<family>"
        seconds[name] = seconds.get(name, 0.0) + (run.end_time - run.start_time).total_seconds()
    return seconds


def cli(steps: int, home: Path) -> Run:
    """`rlgen run vae` in a fresh process against the same store; Prefect in its ephemeral mode (unless
    PREFECT_API_URL is set)."""
    sets = [arg for key, value in {**OVERRIDES, "max_steps": steps}.items() for arg in ("--set", f"{key}={value}")]
    variables = {"RLGEN_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    wall, result = run_quietly(
        [str(Path(sys.executable).with_name("rlgen")), "run", "vae", *sets], variables, home / "cli-result.json"
    )
    return Run(wall, result["metrics"]["train/seconds"])  # the flow's ModelResult


def warm_prefect_home(home: Path) -> None:
    """Create the ephemeral Prefect database the cli will use, so that its timed run does not pay for the creation."""
    code = "import rlgen.settings; from prefect import flow; flow(name='warm-up')(lambda: None)()"
    run_quietly([sys.executable, "-c", code], {"PREFECT_HOME": str(home / "prefect")})


def measure(n: int, repeats: int) -> dict[str, dict[int, Run]]:
    """Every mode at n and 2n steps (the cli at n), the fastest of `repeats` each, in a throwaway store and Prefect
    test server."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.models import flow_for
    from rlgen import steps as flow_steps

    vae_flow = flow_for("vae")

    def timed(mode: str, steps: int, prepared: PreparedData) -> Run:
        cfg, started = config(steps), time.perf_counter()
        if mode == "flow":
            train = vae_flow(cfg).metrics["train/seconds"]
            wall = time.perf_counter() - started
            return Run(wall, train, task_seconds())
        train = plain(cfg, prepared) if mode == "plain" else minimal_flow(cfg, prepared)
        return Run(time.perf_counter() - started, train)

    runs: dict[str, dict[int, Run]] = {mode: {} for mode in MODES}
    loggers = [logging.getLogger(name) for name in ("prefect", "mlflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)  # no run-by-run INFO lines in the middle of the suite's output
    try:
        with scratch_home("rlgen-bench-overhead-") as tmp, prefect_test_harness(server_startup_timeout=180):
            prepared = flow_steps.prepare(config(n))
            for mode in ("flow", "task"):  # warm-up: first-call costs, and the LeNet evaluator (trained once per store)
                timed(mode, 1, prepared)
            for _ in range(repeats):
                for steps in (n, 2 * n):
                    for mode in ("plain", "task", "flow"):
                        run = timed(mode, steps, prepared)
                        best = runs[mode].get(steps, run)
                        runs[mode][steps] = run if run.train <= best.train else best
            warm_prefect_home(tmp)
            runs["cli"][n] = cli(n, tmp)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    return runs


class Cost(NamedTuple):
    fixed: float  # seconds per run outside the training loop
    per_step: float  # seconds per training step


def cost(runs: dict[int, Run], per_step: float | None = None) -> Cost:
    """Per step: the loop's clock at the larger budget (or given); fixed: wall minus loop, averaged over the budgets."""
    if per_step is None:
        steps, run = max(runs.items())
        per_step = run.train / steps
    return Cost(sum(r.wall - r.train for r in runs.values()) / len(runs), per_step)


def share(seconds: float) -> float:
    """`seconds` added to a training that takes 2 minutes as a plain function, as a % of the total wall time."""
    return 100 * seconds / (TWO_MINUTES + seconds)


def overhead_figures(n: int, repeats: int = 1) -> list[Figure]:
    """Fixed and per-step cost of each mode over plain, its share of a 2-minute training's wall time, and the flow's
    split."""
    runs = measure(n, repeats)
    costs = {mode: cost(runs[mode]) for mode in ("plain", "task", "flow")}
    costs["cli"] = cost(runs["cli"], costs["flow"].per_step)
    base = costs["plain"]
    steps_2min = TWO_MINUTES / base.per_step
    detail = f"MLP VAE, {n} and {2 * n} steps" + (f", best of {repeats}" if repeats > 1 else "")
    figures = [
        Figure(
            "overhead",
            "plain: outside the loop",
            base.fixed,
            "s",
            f"{detail}; load the prepared data, build",
            extra={"runs": runs["plain"]},
        ),
        Figure(
            "overhead",
            "plain: per step",
            base.per_step * 1e3,
            "ms",
            f"{detail}; a 2-minute training is {steps_2min:,.0f} steps",
        ),
    ]
    for mode in ("task", "flow", "cli"):
        fixed, per_step = costs[mode].fixed - base.fixed, costs[mode].per_step - base.per_step
        added = fixed + per_step * steps_2min
        figures += [
            Figure(
                "overhead",
                f"{mode}: fixed overhead",
                fixed,
                "s",
                f"{detail}; over plain",
                extra={"runs": runs[mode], "cost": costs[mode]._asdict()},
            ),
            Figure(
                "overhead",
                f"{mode}: per-step overhead",
                per_step * 1e3,
                "ms",
                f"{detail}; over plain" + ("; the flow's" if mode == "cli" else ""),
            ),
            Figure(
                "overhead",
                f"{mode}: share of a 2-minute training",
                share(added),
                "%",
                f"{added:.1f} s added to {TWO_MINUTES:.0f} s; target <= 5%",
            ),
        ]
    figures += flow_split(runs["flow"], base, costs["flow"].per_step - base.per_step, steps_2min)
    return figures


def flow_split(runs: dict[int, Run], base: Cost, per_step: float, steps_2min: float) -> list[Figure]:
    """Where the flow's time outside plain's loop goes, by Prefect's record of its task runs (averaged over the
    budgets): each task's seconds (the training task's without its loop), and the rest, orchestration proper."""
    tasks: dict[str, float] = {}
    for run in runs.values():
        for name, seconds in (run.tasks or {}).items():
            tasks[name] = tasks.get(name, 0.0) + seconds / len(runs)
    train_loop = sum(r.train for r in runs.values()) / len(runs)
    tasks["train"] = tasks.get("train", train_loop) - train_loop  # the training task outside its loop
    outside = sum(r.wall - r.train for r in runs.values()) / len(runs)
    orchestration = outside - sum(tasks.values())
    figures = [
        Figure(
            "overhead",
            f"flow: task {name}",
            seconds,
            "s",
            "outside the training loop" if name == "train" else "Prefect's record of the task run",
        )
        for name, seconds in sorted(tasks.items(), key=lambda item: -item[1])
    ]
    loop = per_step * steps_2min
    figures += [
        Figure(
            "overhead",
            "flow: orchestration outside the tasks",
            orchestration,
            "s",
            "flow engine, task submission, MLflow runs: flow wall - loop - tasks",
        ),
        Figure(
            "overhead",
            "flow: orchestration share of a 2-minute training",
            share(orchestration),
            "%",
            f"{orchestration:.1f} s; target <= 5%",
        ),
        Figure(
            "overhead",
            "flow: in-loop share of a 2-minute training",
            share(loop),
            "%",
            f"{loop:.1f} s: the driver's NaN checks, metrics, grids to the run, checkpoints "
            f"({per_step * 1e3:.2f} ms/step)",
        ),
    ]
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's overhead figures (CPU): budgets of 200 and 400 steps with --quick, 1,000 and 2,000 (best of 2)
    otherwise."""
    return overhead_figures(200, 1) if opts.quick else overhead_figures(1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="the smaller budget N (2N is measured too)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode and budget; the fastest counts")
    args = parser.parse_args()
    rows = overhead_figures(args.steps, args.repeats)
    print_table(rows, "orchestration overhead")
    save(rows, RESULTS / "overhead.json")


if __name__ == "__main__":
    main()
