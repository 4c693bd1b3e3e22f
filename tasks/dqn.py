"""DQN tasks: describe the environment, train, evaluate, export, register.

Each `@task` at the bottom wraps the plain function of the same name above it; tests call the
plain functions directly. Tasks hand each other run ids and artifact paths, never tensors: every
file a task writes goes into the tracking store from a scratch folder of its own.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import NamedTuple

import torch
from prefect import task
from prefect.runtime import task_run

from models import dqn
from models.common import autocast, compile_modules, seed_everything
from rlgen.config import DQNConfig
from tasks import promotion, tracking
from tasks.checkpoint import TrainingSession, load_checkpoint, save_checkpoint
from tasks.envs import EVAL_WAVE, EnvSpec, describe_env, env_settings, episode_seeds, make_vector_env
from tasks.export import check_parity, export_checked_programs, script_module
from tasks.plots import histogram, learning_curve, moving_average
from tasks.progress import fan_out, progress_bar
from tasks.runs import training_device

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoints/dqn.pt"
POLICY_DIR = "policy"
POLICY_FILE = "policy.pt"
PROGRAM_FILE = "policy.pt2"  # forward (actions); its q_values in policy.q_values.pt2


class TrainOutput(NamedTuple):
    run_id: str
    checkpoint: str  # artifact path within the run
    steps: int
    episodes: int
    seconds: float
    solved_step: int | None


class EvalReport(NamedTuple):
    mean_return: float
    std_return: float
    min_return: float
    max_return: float
    episodes: int
    solved: bool


# --------------------------------------------------------------------------- plain functions


def inspect_env(cfg: DQNConfig) -> EnvSpec:
    """Validate the environment and the device before any run is opened."""
    training_device(cfg)
    return describe_env(cfg)


def train(cfg: DQNConfig, spec: EnvSpec, run_id: str) -> TrainOutput:
    """Train a DQN agent, log its metrics, checkpoint and learning curve to run `run_id`."""
    with tracking.temp_dir() as tmp:
        return _train(cfg, spec, run_id, Path(tmp))


def _train(cfg: DQNConfig, spec: EnvSpec, run_id: str, workdir: Path) -> TrainOutput:
    seed_everything(cfg.seed)
    device = training_device(cfg)
    q_network = dqn.build_q_network(spec.obs_shape, spec.n_actions, cfg.hidden).to(device)
    n_params = sum(p.numel() for p in q_network.parameters())
    log.info("dqn on %s (%s observations), %d parameters, device %s", cfg.env_id, cfg.obs_mode, n_params, device)
    tracking.log_params(run_id, {"model.parameters": n_params, "device.resolved": str(device)})

    val_envs = make_vector_env(cfg, min(cfg.val_episodes, EVAL_WAVE))
    val_seeds = episode_seeds(cfg, "validation", cfg.val_episodes)

    def validate(network: torch.nn.Module) -> float:
        network.eval()
        returns = dqn.greedy_returns(dqn.torch_actor(dqn.GreedyPolicy(network), device), val_envs, val_seeds)
        network.train()
        return float(returns.mean())

    session = TrainingSession(cfg, run_id, {"q_network": q_network})
    if cfg.compile:
        compile_modules(q_network)
    envs = make_vector_env(cfg, cfg.num_envs)
    started = time.perf_counter()
    try:
        with autocast(device, cfg.amp), progress_bar(cfg.total_steps, f"dqn {cfg.env_id}", ("rl/episodic_return", "rl/epsilon", "val/mean_return")) as bar:
            on_metrics = fan_out(session.recorder, session.logger, bar)
            result = session.run(
                lambda start: dqn.fit(cfg, envs, q_network, device, on_metrics, validate, spec.solve_threshold, session.after_step, start),
                None, "lower lr or max_grad_norm",
            )
    finally:
        envs.close()
        val_envs.close()
    seconds = time.perf_counter() - started

    summary = {
        "train/steps": result.steps,
        "train/episodes": result.episodes,
        "train/updates": result.updates,
        "train/seconds": seconds,
        "perf/steps_per_sec": (result.steps - session.start_step) / seconds,
    }
    if result.solved_step is not None:
        summary["train/solved_step"] = result.solved_step
    if result.best_step is not None:
        summary["train/best_step"] = result.best_step
    tracking.log_metrics(run_id, summary, step=result.steps)

    checkpoint = save_checkpoint(workdir / "dqn.pt", {
        "config": cfg.model_dump(mode="json"),
        "model": q_network.state_dict(),
        "step": result.steps,
    })
    tracking.log_artifact(run_id, checkpoint, "checkpoints")
    returns = session.recorder.history["rl/episodic_return"]
    curve = learning_curve(
        {
            "return": {
                "episode": returns,
                "mean of last 20": moving_average(returns, 20),
                "validation (greedy)": session.recorder.history["val/mean_return"],
            },
            "Huber loss": {"train/loss": session.recorder.history["train/loss"]},
            "epsilon": {"rl/epsilon": session.recorder.history["rl/epsilon"]},
        },
        workdir / "learning_curve.png",
        title=f"DQN on {cfg.env_id} ({cfg.obs_mode}), seed {cfg.seed}",
    )
    tracking.log_artifact(run_id, curve, "plots")
    return TrainOutput(run_id, CHECKPOINT, result.steps, result.episodes, seconds, result.solved_step)


def load_q_network(cfg: DQNConfig, spec: EnvSpec, trained: TrainOutput, workdir: Path, device: torch.device) -> torch.nn.Module:
    """Rebuild the trained Q-network from its checkpoint in the tracking store."""
    path = tracking.download(trained.run_id, trained.checkpoint, workdir / "download")
    state = load_checkpoint(path, device)
    q_network = dqn.build_q_network(spec.obs_shape, spec.n_actions, cfg.hidden).to(device)
    q_network.load_state_dict(state["model"])
    return q_network.eval()


def evaluate(cfg: DQNConfig, spec: EnvSpec, trained: TrainOutput) -> EvalReport:
    """Greedy returns over `eval_episodes` unseen seeds; metrics, a histogram and a JSON report."""
    with tracking.temp_dir() as tmp:
        return _evaluate(cfg, spec, trained, Path(tmp))


def _evaluate(cfg: DQNConfig, spec: EnvSpec, trained: TrainOutput, workdir: Path) -> EvalReport:
    device = training_device(cfg)
    q_network = load_q_network(cfg, spec, trained, workdir, device)
    envs = make_vector_env(cfg, min(cfg.eval_episodes, EVAL_WAVE))
    seeds = episode_seeds(cfg, "evaluation", cfg.eval_episodes)
    try:
        returns = dqn.greedy_returns(dqn.torch_actor(dqn.GreedyPolicy(q_network), device), envs, seeds)
    finally:
        envs.close()
    threshold = spec.solve_threshold
    report = EvalReport(
        mean_return=float(returns.mean()),
        std_return=float(returns.std()),
        min_return=float(returns.min()),
        max_return=float(returns.max()),
        episodes=len(returns),
        solved=threshold is not None and float(returns.mean()) >= threshold,
    )
    metrics = {f"eval/{k}": float(v) for k, v in report._asdict().items()}
    tracking.log_metrics(trained.run_id, metrics, step=trained.steps)
    tracking.log_dict(trained.run_id, {
        **report._asdict(),
        "solve_threshold": threshold,
        "seeds": seeds,
        "returns": returns.tolist(),
    }, "evaluation/report.json")
    plot = histogram(returns, workdir / "eval_returns.png", f"Greedy returns over {len(returns)} episodes", "return")
    tracking.log_artifact(trained.run_id, plot, "evaluation")
    return report


def export(cfg: DQNConfig, spec: EnvSpec, trained: TrainOutput) -> str:
    """TorchScript of the greedy policy and its .pt2 programs (actions, Q-values), parity-checked in fresh processes, logged under policy/."""
    with tracking.temp_dir() as tmp:
        return _export(cfg, spec, trained, Path(tmp))


def require_parity(cfg: DQNConfig, trained: TrainOutput, kind: str, prefix: str, parity: dict) -> None:
    """Log an exported policy's parity with the eager one (`prefix`max_abs_diff, `prefix`actions_match); raise if it fails."""
    q_parity, action_parity = parity["q_values"], parity["forward"]
    tracking.log_metrics(trained.run_id, {
        f"{prefix}max_abs_diff": q_parity.max_abs_diff, f"{prefix}actions_match": float(action_parity.outputs_equal),
    }, step=trained.steps)
    if not (q_parity.max_abs_diff <= 1e-5 and action_parity.outputs_equal):
        raise RuntimeError(
            f"{kind} export of {cfg.registered_name} does not match the eager model: max |dQ| = "
            f"{q_parity.max_abs_diff:.3g} (limit 1e-5), actions identical: {action_parity.outputs_equal}"
        )


def _export(cfg: DQNConfig, spec: EnvSpec, trained: TrainOutput, workdir: Path) -> str:
    q_network = load_q_network(cfg, spec, trained, workdir, torch.device("cpu"))
    policy = dqn.GreedyPolicy(q_network).eval()
    metadata = {
        "family": "dqn",
        "env": env_settings(cfg),
        "obs_shape": list(spec.obs_shape),
        "n_actions": spec.n_actions,
        "solve_threshold": spec.solve_threshold,
        "config": cfg.model_dump(mode="json"),
    }
    path = script_module(policy, workdir / POLICY_FILE, metadata)

    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.obs_mode == "pixels":
        inputs = torch.randint(0, 256, (64, *spec.obs_shape), dtype=torch.uint8, generator=generator)
    else:
        inputs = torch.randn(64, *spec.obs_shape, generator=generator)
    with torch.no_grad():
        q_values, actions = policy.q_values(inputs), policy(inputs)
    expected = {"q_values": q_values, "forward": actions}
    require_parity(cfg, trained, "TorchScript", "export/", check_parity(path, inputs, expected))
    program = export_checked_programs(policy, inputs, workdir / PROGRAM_FILE, metadata, expected)
    tracking.set_tags(trained.run_id, program.tags())
    if program.paths:
        require_parity(cfg, trained, ".pt2", "export/pt2_", program.parity)
    for file in (path, *program.paths):
        tracking.log_artifact(trained.run_id, file, POLICY_DIR)
    return POLICY_DIR


def register(cfg: DQNConfig, trained: TrainOutput, artifact_dir: str, report: EvalReport) -> tracking.ModelVersion:
    """Register the exported policy as a new version of `dqn-<env_id>`."""
    return tracking.register_model(
        trained.run_id,
        artifact_dir,
        cfg.registered_name,
        tags={"family": "dqn", "eval/mean_return": f"{report.mean_return:.2f}", "solved": str(report.solved)},
    )


def evaluation_key(cfg: DQNConfig) -> str:
    """What the final evaluation depends on: the environment, its observation mode and the episodes."""
    return promotion.evaluation_key(cfg.env_id, cfg.obs_mode, f"eval_episodes={cfg.eval_episodes}")


def summarize(parent_id: str, trained: TrainOutput, report: EvalReport, version: tracking.ModelVersion) -> None:
    """Copy the headline figures onto the flow's parent run, where `rlgen runs` reads them."""
    metrics = {f"eval/{k}": float(v) for k, v in report._asdict().items()}
    metrics.update({"train/steps": trained.steps, "train/seconds": trained.seconds})
    tracking.log_metrics(parent_id, metrics, step=trained.steps)
    tracking.set_tags(parent_id, {
        "rlgen.model": f"{version.name}/{version.version}",
        "rlgen.train_run_id": trained.run_id,
    })


# --------------------------------------------------------------------------- Prefect tasks


def _tag_task_run(run_id: str) -> None:
    tracking.set_tags(run_id, {f"prefect.task_run.{task_run.task_name}": task_run.id})


@task(name="dqn-env-spec")
def env_spec_task(cfg: DQNConfig) -> EnvSpec:
    return inspect_env(cfg)


@task(name="dqn-train")
def train_task(cfg: DQNConfig, spec: EnvSpec, run_id: str) -> TrainOutput:
    _tag_task_run(run_id)
    return train(cfg, spec, run_id)


@task(name="dqn-evaluate")
def evaluate_task(cfg: DQNConfig, spec: EnvSpec, trained: TrainOutput) -> EvalReport:
    _tag_task_run(trained.run_id)
    return evaluate(cfg, spec, trained)


@task(name="dqn-export")
def export_task(cfg: DQNConfig, spec: EnvSpec, trained: TrainOutput) -> str:
    _tag_task_run(trained.run_id)
    return export(cfg, spec, trained)


@task(name="dqn-register")
def register_task(cfg: DQNConfig, trained: TrainOutput, artifact_dir: str, report: EvalReport) -> tracking.ModelVersion:
    _tag_task_run(trained.run_id)
    return register(cfg, trained, artifact_dir, report)


@task(name="dqn-summarize")
def summarize_task(parent_id: str, trained: TrainOutput, report: EvalReport, version: tracking.ModelVersion) -> None:
    summarize(parent_id, trained, report, version)
