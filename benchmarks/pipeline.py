"""The main job's thread policy: `rlgen run pipeline` (quick profile, every model, offline data) with
concurrency=2 against concurrency=1, each in a fresh process and a fresh store: wall time and each branch's time
(its model flow's MLflow run, start to end). With concurrency 2 the two running branches get one torch thread
each (rlgen/pipeline/branches.py shared_threads); with 1, the branch gets both. About 15+ minutes per run on 2 cores.

`--quick` (a check that it works, not a figure): three models on tiny budgets.

    python -m benchmarks.pipeline [--quick] [--concurrency 1 2] [--set runner=dask ...]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from benchmarks.common import DATA, RESULTS, Figure, Options, env, print_table, run_quietly, save

QUICK = [
    "models=vae,cvae,lm-char",
    'overrides={"vae": {"epochs": 1}, "cvae": {"epochs": 1}, "lm-char": {"max_steps": 20}}',
]


def run_pipeline(concurrency: int, extra: list[str], home: Path) -> tuple[float, dict, dict[str, float]]:
    """Run the pipeline in a fresh process against `home`; its wall time, its result and each branch's seconds."""
    sets = [f"data_root={DATA.resolve()}", f"concurrency={concurrency}", *extra]
    command = [
        str(Path(sys.executable).with_name("rlgen")),
        "run",
        "pipeline",
        *(arg for pair in sets for arg in ("--set", pair)),
    ]
    wall, result = run_quietly(command, {"RLGEN_HOME": str(home)}, home / "result.json")
    return wall, result, branch_seconds(result["run_id"], home)


def branch_seconds(pipeline_run_id: str, home: Path) -> dict[str, float]:
    """Seconds of each branch: its model flow's MLflow run under the pipeline's run, named by its subject
    (`vae-mnist`)."""
    from rlgen import tracking

    with env(RLGEN_HOME=str(home)):
        mlflow = tracking.client()
        experiment = mlflow.get_run(pipeline_run_id).info.experiment_id
        runs = mlflow.search_runs(
            [experiment], filter_string=f"tags.mlflow.parentRunId = '{pipeline_run_id}' and tags.`rlgen.role` = 'flow'"
        )
    return {
        re.sub(r"-s\d+-\d{8}T\d{6}$", "", r.info.run_name): (r.info.end_time - r.info.start_time) / 1000 for r in runs
    }


def pipeline_figures(
    concurrencies: list[int], quick: bool, device: str = "cpu", sets: tuple[str, ...] = ()
) -> list[Figure]:
    """Wall time per concurrency, each branch's time, and the speed-up of the largest concurrency over 1; `sets` are
    extra KEY=VALUE for the pipeline (runner=dask, models=..., ...)."""
    extra = [*(QUICK if quick else []), f"device={device}", *sets]
    walls, branches, threads = {}, {}, {}
    for c in concurrencies:
        with tempfile.TemporaryDirectory(prefix=f"rlgen-bench-pipeline-{c}-") as home:
            walls[c], result, branches[c] = run_pipeline(c, extra, Path(home))
            threads[c] = result.get("torch_threads")
        print(f"pipeline, concurrency {c}: {walls[c] / 60:.1f} min", flush=True)
    profile = "quick check, 3 models" if quick else "quick profile, every model"
    figures = [
        Figure(
            "pipeline",
            f"concurrency {c}: wall",
            walls[c] / 60,
            "min",
            f"{profile}; {threads[c]} torch thread(s) per branch",
            device,
            threads[c] or 0,
            {"branch_seconds": branches[c]},
        )
        for c in concurrencies
    ]
    if 1 in walls and len(walls) > 1:
        top = max(walls)
        figures.append(
            Figure("pipeline", f"concurrency {top} vs 1", walls[1] / walls[top], "x", "wall-time speed-up", device)
        )
        for name in sorted(branches[top]):
            alone = branches[1].get(name)
            figures.append(
                Figure(
                    "pipeline",
                    f"branch {name}",
                    branches[top][name] / 60,
                    "min",
                    f"at concurrency {top}; alone (concurrency 1): {alone / 60:.1f} min"
                    if alone
                    else f"at concurrency {top}",
                    device,
                    threads[top] or 0,
                )
            )
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's pipeline figures: not part of --quick unless named with --only (then a 3-model check)."""
    return pipeline_figures([1, 2], opts.quick, str(opts.device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="three models on tiny budgets: a check, not a figure")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--set", dest="sets", nargs="*", default=[], help="extra KEY=VALUE for the pipeline, e.g. runner=dask"
    )
    args = parser.parse_args()
    rows = pipeline_figures(args.concurrency, args.quick, args.device, tuple(args.sets))
    print_table(rows, "pipeline: concurrency")
    save(rows, RESULTS / ("pipeline-quick.json" if args.quick else "pipeline.json"))


if __name__ == "__main__":
    main()
