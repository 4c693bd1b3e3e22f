"""DQN on CartPole-v1 from the state vector and from rendered pixels: greedy return over environment steps.

Trains both observation modes with their default configs on the same seeds, through the family's trainer, without
stopping once solved, so each curve spans its whole budget: validation mean return (greedy, 20 episodes) every
`--eval-every` steps, then the kept policy's 100-episode evaluation. Writes one figure with both curves (mean over
seeds, min-max band) to docs/figures/dqn_state_vs_pixels.png and logs it, with the figures, to an MLflow run of the
store rlgen uses (`MLFLOW_TRACKING_URI`, else the embedded one).

    python -m benchmarks.dqn_pixels                          # seeds 1-3, 50k state steps, 250k pixel steps
    python -m benchmarks.dqn_pixels --seeds 1 --pixel-steps 50000 --no-mlflow
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, ROOT
from benchmarks.machine import describe

FIGURE = ROOT / "docs" / "figures" / "dqn_state_vs_pixels.png"


def run(job: tuple[str, int, int, int, dict[str, Any]]) -> dict[str, Any]:
    """One seed of one observation mode: its validation curve, the final evaluation, and the seconds."""
    obs_mode, seed, total_steps, eval_every, overrides = job
    import torch

    torch.set_num_threads(1)
    from benchmarks.common import build_trainer
    from models import dqn
    from rlgen import steps
    from rlgen.environments import EVAL_WAVE, episode_seeds, make_vector_env
    from rlgen.families.dqn import DQNConfig

    settings = {"total_steps": total_steps, "eval_every": eval_every, "stop_when_solved": False, **overrides}
    cfg = DQNConfig(seed=seed, device="cpu", obs_mode=obs_mode, **settings)
    training = build_trainer(cfg, steps.prepare(cfg))
    trainer, curve = training.trainer, []
    started = time.perf_counter()
    while not trainer.done():
        trainer.step()
        curve += [
            (trainer.steps, r.metrics["val/mean_return"]) for r in trainer.reports() if "val/mean_return" in r.metrics
        ]
    seconds = time.perf_counter() - started
    trainer.finish()
    envs = make_vector_env(cfg, min(cfg.eval_episodes, EVAL_WAVE))
    try:
        actor = dqn.torch_actor(dqn.GreedyPolicy(trainer.modules()["q_network"].eval()), torch.device("cpu"))
        returns = dqn.greedy_returns(actor, envs, episode_seeds(cfg, "evaluation", cfg.eval_episodes))
    finally:
        envs.close()
    return {
        "obs_mode": obs_mode,
        "seed": seed,
        "env_steps": trainer.steps,
        "train_seconds": round(seconds, 1),
        "curve": curve,
        "first_solved_step": trainer.solved_step,
        "eval_mean_return": round(float(returns.mean()), 2),
        "overrides": overrides,
    }


def log_to_mlflow(result: dict[str, Any], figure: Path) -> str:
    """A run in the `benchmarks` experiment with the figure, the results file and the summary figures."""
    from rlgen.tracking.store import client, experiment_id

    mlflow = client()
    run = mlflow.create_run(experiment_id("benchmarks"), run_name="dqn-state-vs-pixels")
    run_id = run.info.run_id
    for mode, summary in result["summary"].items():
        for key, value in summary.items():
            if isinstance(value, int | float):
                mlflow.log_metric(run_id, f"{mode}/{key}", float(value))
    mlflow.log_artifact(run_id, str(figure))
    mlflow.log_dict(run_id, result, "dqn_state_vs_pixels.json")
    mlflow.set_terminated(run_id)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--state-steps", type=int, default=50_000)
    parser.add_argument("--pixel-steps", type=int, default=250_000)
    parser.add_argument("--eval-every", type=int, default=5_000, help="steps between validation points of the curves")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pixel-mode overrides")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-mlflow", action="store_true", help="write the figure and results file only")
    args = parser.parse_args()

    from rlgen.config.base import config_from_overrides
    from rlgen.families.dqn import DQNConfig
    from rlgen.plots import spread_curves

    pixel = config_from_overrides(DQNConfig, ["obs_mode=pixels", *args.set])
    overrides = {k: v for k, v in pixel.model_dump().items() if v != DQNConfig(obs_mode="pixels").model_dump()[k]}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    jobs = [("pixels", s, args.pixel_steps, args.eval_every, overrides) for s in args.seeds]
    jobs += [("state", s, args.state_steps, args.eval_every, {}) for s in args.seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run, jobs))
    for row in rows:
        print(
            f"{row['obs_mode']:>6} seed {row['seed']}: {row['env_steps']} steps in {row['train_seconds']:.0f} s, "
            f"first solved at {row['first_solved_step']}, evaluation {row['eval_mean_return']:.1f}",
            flush=True,
        )
    summary = {}
    for mode in ("state", "pixels"):
        mine = [r for r in rows if r["obs_mode"] == mode]
        summary[mode] = {
            "seeds": len(mine),
            "eval_mean_return_median": float(np.median([r["eval_mean_return"] for r in mine])),
            "seeds_at_least_400": sum(r["eval_mean_return"] >= 400 for r in mine),
            "train_seconds_median": float(np.median([r["train_seconds"] for r in mine])),
        }
    FIGURE.parent.mkdir(exist_ok=True)
    curves = {
        f"{mode} ({'frames' if mode == 'pixels' else 'vector'})": [r["curve"] for r in rows if r["obs_mode"] == mode]
        for mode in ("state", "pixels")
    }
    spread_curves(
        curves,
        FIGURE,
        "CartPole-v1: DQN from the state vector and from pixels",
        "environment step",
        "greedy validation return (val_episodes: 20 state, 10 pixels)",
    )
    result = {
        "benchmark": "dqn_pixels",
        "machine": {**describe(__import__("torch").device("cpu")), "torch_threads": 1},
        "seeds": args.seeds,
        "pixel_overrides": overrides,
        "summary": summary,
        "rows": rows,
    }
    if not args.no_mlflow:
        result["mlflow_run"] = log_to_mlflow(result, FIGURE)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dqn_pixels.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
