"""DQN on CartPole-v1 (state observations) with the default config, over several seeds.

Prints env steps/s, and the environment steps and wall time until the agent is solved: the
greedy policy's mean return over 100 unseen evaluation episodes reaches 475. The clock covers
training, including its validation passes; the final 100-episode evaluation is timed apart.

    python -m benchmarks.dqn_cartpole [--seeds 1 2 3 4 5] [--device cpu] [--total-steps 50000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Figure, Options, build_trainer
from benchmarks.machine import describe
from models import dqn
from models.common import resolve_device
from rlgen import steps
from rlgen.environments import EVAL_WAVE, episode_seeds, make_vector_env
from rlgen.families.dqn import DQNConfig

RESULTS = Path(__file__).parent / "results"


def run_seed(cfg: DQNConfig, device: torch.device) -> dict:
    """Train one seed to the stopping rule, then evaluate the kept policy on 100 unseen episodes.

    The family's own trainer (rlgen.families.dqn.train), built as the flow builds it, steps until it is done: solved
    by its validation, or out of budget; then `finish()` keeps the best validated weights, as the driver does.
    """
    spec = steps.prepare(cfg)  # the environment, checked and described
    training = build_trainer(cfg, spec)
    train_seconds = training.run()
    training.trainer.finish()
    q_network = training.trainer.modules()["q_network"]

    started = time.perf_counter()
    eval_envs = make_vector_env(cfg, min(cfg.eval_episodes, EVAL_WAVE))
    try:
        actor = dqn.torch_actor(dqn.GreedyPolicy(q_network.eval()), device)
        returns = dqn.greedy_returns(actor, eval_envs, episode_seeds(cfg, "evaluation", cfg.eval_episodes))
    finally:
        eval_envs.close()
    eval_seconds = time.perf_counter() - started
    solved = bool(returns.mean() >= spec.solve_threshold)
    env_steps = training.trainer.steps
    return {
        "seed": cfg.seed,
        "env_steps": env_steps,
        "train_seconds": round(train_seconds, 1),
        "env_steps_per_sec": round(env_steps / train_seconds),
        "eval_mean_return": round(float(returns.mean()), 2),
        "eval_std_return": round(float(returns.std()), 2),
        "eval_min_return": float(returns.min()),
        "eval_seconds": round(eval_seconds, 1),
        "solved": solved,
        "stopped_solved": training.trainer.solved,  # the trainer's confirmed validation said so
        "confirmations": training.trainer.validation.confirmations,
        "steps_to_solve": env_steps if solved else None,
    }


def figures(opts: Options) -> list[Figure]:
    """The suite's DQN figures: seed 1 with --quick, seeds 1-5 (medians) otherwise; default config, 50k-step cap."""
    seeds = [1] if opts.quick else [1, 2, 3, 4, 5]
    rows = [run_seed(DQNConfig(seed=seed, device=str(opts.device), total_steps=50_000), opts.device) for seed in seeds]
    solved = [r for r in rows if r["solved"]]
    detail = "seed 1" if opts.quick else f"median of seeds 1-5, {len(solved)}/{len(rows)} solved"

    def median(key: str, of: list[dict]) -> float | None:
        return float(np.median([r[key] for r in of])) if of else None

    device = str(opts.device)
    return [
        Figure(
            "dqn",
            "CartPole-v1: env steps/s",
            median("env_steps_per_sec", rows),
            "steps/s",
            f"{detail}; training incl. validation",
            device,
        ),
        Figure(
            "dqn",
            "CartPole-v1: steps to solve",
            median("steps_to_solve", solved),
            "env steps",
            f"{detail}; mean >= 475 over 100 episodes",
            device,
        ),
        Figure(
            "dqn",
            "CartPole-v1: seconds to solve",
            median("train_seconds", solved),
            "s",
            f"{detail}; training wall time",
            device,
            extra={"seeds": rows},
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--total-steps", type=int, default=50_000)
    args = parser.parse_args()

    device = resolve_device(args.device)
    rows = []
    print(f"{'seed':>4} {'steps':>7} {'seconds':>8} {'steps/s':>8} {'eval mean':>10} {'eval min':>9} solved")
    for seed in args.seeds:
        cfg = DQNConfig(seed=seed, device=args.device, total_steps=args.total_steps)
        row = run_seed(cfg, device)
        rows.append(row)
        print(
            f"{seed:>4} {row['env_steps']:>7} {row['train_seconds']:>8.1f} {row['env_steps_per_sec']:>8} "
            f"{row['eval_mean_return']:>10.1f} {row['eval_min_return']:>9.0f} {row['solved']}",
            flush=True,
        )
    solved = [r for r in rows if r["solved"]]
    summary = {
        "benchmark": "dqn_cartpole",
        "machine": describe(device),
        "seeds_solved": f"{len(solved)}/{len(rows)}",
        "median_steps_to_solve": float(np.median([r["steps_to_solve"] for r in solved])) if solved else None,
        "median_train_seconds": float(np.median([r["train_seconds"] for r in rows])),
        "rows": rows,
    }
    print(
        f"solved {summary['seeds_solved']} within {args.total_steps} steps; median steps to solve "
        f"{summary['median_steps_to_solve']}, median wall time {summary['median_train_seconds']:.1f} s "
        f"({summary['machine']['cpu']}, {summary['machine']['torch_threads']} threads, {device})"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dqn_cartpole.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
