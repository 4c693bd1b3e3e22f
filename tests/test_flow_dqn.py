"""`rlgen run dqn` end to end on a tiny budget, read back through MLflow's own client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import model_files
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from rlgen.checkpoints.io import run_checkpoint_path
from rlgen.cli import app

TINY = [
    "total_steps=600",
    "learning_starts=200",
    "train_every=50",
    "gradient_steps=5",
    "hidden=32",
    "eval_every=300",
    "val_episodes=3",
    "eval_episodes=5",
    "log_every=100",
    "target_update_every=100",
]


def run_cli(*args: str) -> CliRunner.Result:
    """The CLI in this process, for the commands that run no flow."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{result.output}\n{result.stderr}\n{result.exception!r}"
    return result


def sets(pairs: list[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.fixture
def mlflow_client(store: Path) -> MlflowClient:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_run_dqn_records_everything_and_play_uses_the_export(
    rlgen_cli, store: Path, mlflow_client: MlflowClient
) -> None:
    rlgen_cli("run", "dqn", *sets(TINY))

    experiment = mlflow_client.get_experiment_by_name("rlgen")
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(store)
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["prefect.flow_name"] == "dqn" and parent.data.tags["prefect.flow_run_id"]
    assert child.data.tags["prefect.flow_run_id"] == parent.data.tags["prefect.flow_run_id"]
    assert child.data.tags["prefect.task_run.train"] and child.data.tags["prefect.task_run.export"]

    # params: the full validated config, on both runs
    for run in (parent, child):
        assert run.data.params["total_steps"] == "600" and run.data.params["env_id"] == "CartPole-v1"
        assert run.data.params["double_dqn"] == "true"

    # metrics with their steps
    returns = mlflow_client.get_metric_history(child.info.run_id, "rl/episodic_return")
    assert len(returns) >= 5 and all(1 <= m.value <= 500 for m in returns)
    steps = [m.step for m in returns]
    assert steps == sorted(steps) and 0 < steps[0] and steps[-1] <= 600
    assert mlflow_client.get_metric_history(child.info.run_id, "train/loss")
    assert 0 < child.data.metrics["eval/mean_return"] <= 500
    assert child.data.metrics["eval/episodes"] == 5
    assert child.data.metrics["export/max_abs_diff"] <= 1e-5
    assert child.data.metrics["export/actions_match"] == 1.0
    assert (
        child.data.metrics["export/pt2_max_abs_diff"] <= 1e-5 and child.data.metrics["export/pt2_actions_match"] == 1.0
    )
    assert child.data.tags["export/pt2"] == "policy.pt2, policy.q_values.pt2"
    assert parent.data.metrics["eval/mean_return"] == child.data.metrics["eval/mean_return"]

    # artifacts
    def listing(run_id: str, path: str | None = None) -> set[str]:
        return {f.path for f in mlflow_client.list_artifacts(run_id, path)}

    assert "config.json" in listing(parent.info.run_id)
    child_id = child.info.run_id
    assert {"checkpoints/dqn.pt"} == listing(child_id, "checkpoints")
    assert {"plots/learning_curve.png"} == listing(child_id, "plots")
    files = model_files(mlflow_client, "dqn-CartPole-v1")  # the MLflow model: pyfunc from code over the exported files
    assert {
        "artifacts/policy.pt",
        "artifacts/policy.pt2",
        "artifacts/policy.q_values.pt2",
        "MLmodel",
        "policy.py",
    } <= files
    assert {"evaluation/report.json", "evaluation/returns.json", "evaluation/eval_returns.png"} == listing(
        child_id, "evaluation"
    )

    # the registered model version points at the exported policy
    (version,) = mlflow_client.search_model_versions("name='dqn-CartPole-v1'")
    assert version.run_id == child_id and version.source.startswith("models:/m-")  # the run's MLflow model

    # rlgen play loads the MLflow model by registered name, by run id and by path
    out = run_cli("play", "--model", "dqn-CartPole-v1", "--episodes", "3").output
    assert "dqn-CartPole-v1 on CartPole-v1: 3 episodes, mean return" in out
    assert "3 episodes" in run_cli("play", "--model", child_id, "--episodes", "3").output
    listing_out = run_cli("runs").output
    assert parent.info.run_id in listing_out and "FINISHED" in listing_out


def test_pixel_mode_trains_on_rendered_frames(rlgen, store: Path, mlflow_client: MlflowClient) -> None:
    pixels = [p for p in TINY if not p.startswith(("total_steps", "eval_every"))]
    rlgen("run", "dqn", *sets([*pixels, "obs_mode=pixels", "total_steps=300", "eval_every=0"]))
    (version,) = mlflow_client.search_model_versions("name='dqn-CartPole-v1-pixels'")
    run = mlflow_client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["export/actions_match"] == 1.0
    assert "3 episodes" in run_cli("play", "--model", "dqn-CartPole-v1-pixels", "--episodes", "3").output


def test_unknown_environment_fails_before_any_run(rlgen, store: Path) -> None:
    done = rlgen("run", "dqn", "--set", "env_id=Pendulum-v1", expect=2)
    assert "DQN needs discrete actions" in done.stderr
    assert not (store / "mlflow.db").exists()


def test_play_with_an_unknown_model_is_a_clear_error(store: Path) -> None:
    result = CliRunner().invoke(app, ["play", "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "No registered model or run called 'no-such-model'" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_is_recorded_as_killed(
    prefect_server: str, store: Path, mlflow_client: MlflowClient, signum: int
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "RLGEN_HOME": str(store.parent)}
    rlgen = Path(sys.executable).with_name("rlgen")
    args = sets([*TINY[1:], "total_steps=10000000", "eval_every=0"])
    process = subprocess.Popen(
        [str(rlgen), "run", "dqn", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 180
        while not _training_has_logged(mlflow_client, store):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(1)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, stderr
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("rlgen").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}
    # it stopped at a step boundary and wrote a checkpoint there, for `rlgen run dqn --resume`
    (train,) = [r for r in runs if r.data.tags["rlgen.role"] == "train"]
    assert "checkpoint written to" in stderr and run_checkpoint_path(train.info.run_id).is_file()


def _training_has_logged(client: MlflowClient, store: Path) -> bool:
    if not (store / "mlflow.db").exists() or client.get_experiment_by_name("rlgen") is None:
        return False
    runs = client.search_runs([client.get_experiment_by_name("rlgen").experiment_id])
    return any("rl/episodic_return" in r.data.metrics for r in runs)
