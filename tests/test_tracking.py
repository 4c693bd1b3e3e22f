"""The tracking module: runs always end in a terminal state, metrics batch, configs round-trip."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rlgen import tracking
from rlgen.families.dqn import DQNConfig


def client(store: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


def test_embedded_store_lives_under_rlgen_home(store: Path) -> None:
    assert tracking.tracking_uri() == f"sqlite:///{store / 'mlflow.db'}"
    experiment_id = tracking.experiment_id("exp")
    location = client(store).get_experiment(experiment_id).artifact_location
    assert location == (store / "artifacts").as_uri()


def test_server_uri_from_the_environment_wins(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999" and not tracking.is_embedded()


@pytest.mark.parametrize(
    ("error", "status"), [(None, "FINISHED"), (RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_runs_always_end_in_a_terminal_state(store: Path, error: type[BaseException] | None, status: str) -> None:
    with pytest.raises(error) if error else nullcontext():
        with tracking.run("exp", "r", tags={"a": "b"}) as run_id:
            if error:
                raise error()
    run = client(store).get_run(run_id)
    assert run.info.status == status and run.data.tags["a"] == "b"


def test_child_runs_point_at_their_parent(store: Path) -> None:
    with tracking.run("exp", "parent") as parent_id, tracking.run("exp", "child", parent_id=parent_id) as child_id:
        pass
    assert client(store).get_run(child_id).data.tags["mlflow.parentRunId"] == parent_id


def test_config_is_logged_as_params_and_json(store: Path, tmp_path: Path) -> None:
    cfg = DQNConfig(seed=4, lr=0.01)
    with tracking.run("exp", "r") as run_id:
        tracking.log_config(run_id, cfg)
    params = client(store).get_run(run_id).data.params
    assert params["seed"] == "4" and params["lr"] == "0.01" and params["solve_threshold"] == "null"
    assert set(params) == set(DQNConfig.model_fields)
    path = tracking.download(run_id, "config.json", tmp_path / "dl")
    assert DQNConfig.model_validate(json.loads(path.read_text())) == cfg


def test_metric_logger_batches_and_keeps_every_step(store: Path) -> None:
    with tracking.run("exp", "r") as run_id:
        logger = tracking.MetricLogger(run_id, flush_every=3600)
        for step in range(2500):
            logger(step, {"train/loss": 1.0 / (step + 1), "rl/epsilon": 0.5})
        assert tracking.metric_history(run_id, "train/loss") == []  # queued: training never waits for MLflow
        logger.flush()
        assert len(tracking.metric_history(run_id, "train/loss")) == 2500  # flush returns once they are stored
        logger.close()
    history = tracking.metric_history(run_id, "train/loss")
    assert [s for s, _ in history] == list(range(2500))
    assert history[9] == (9, pytest.approx(0.1))


def test_metric_logger_sends_in_the_background(store: Path) -> None:
    with tracking.run("exp", "r") as run_id:
        logger = tracking.MetricLogger(run_id, flush_every=0.05)
        logger(1, {"train/loss": 1.0})
        deadline = time.monotonic() + 30
        while not tracking.metric_history(run_id, "train/loss"):
            assert time.monotonic() < deadline, "the background thread never sent the queued metric"
            time.sleep(0.05)
        logger.close()


def test_a_resumed_metric_logger_drops_the_steps_already_stored(store: Path) -> None:
    with tracking.run("exp", "r") as run_id:
        first = tracking.MetricLogger(run_id)
        for step in (10, 20, 30):
            first(step, {"loss": float(step)})
        first.close()  # crashed after step 30 was stored; the checkpoint was at step 10
        again = tracking.MetricLogger(run_id, resume=True)
        for step in (20, 30, 40):  # the replay
            again(step, {"loss": -float(step), "new": 1.0})
        again.close()
    assert tracking.metric_history(run_id, "loss") == [(10, 10.0), (20, 20.0), (30, 30.0), (40, -40.0)]
    assert [s for s, _ in tracking.metric_history(run_id, "new")] == [20, 30, 40]


def test_secrets_are_masked_in_logged_params(store: Path) -> None:
    params = {
        "db_url": "postgresql://rlgen:hunter2@db:5432/mlflow",
        "api_key": "abc123",
        "s3": {"secret_access_key": "k"},
        "sample_tokens": 300,
        "token": "",
        "url": "http://127.0.0.1:5000",
    }
    with tracking.run("exp", "r") as run_id:
        tracking.log_params(run_id, params)
    logged = tracking.get_run(run_id).data.params
    assert logged["db_url"] == "postgresql://rlgen:***@db:5432/mlflow"
    assert logged["api_key"] == "***" and logged["s3.secret_access_key"] == "***"
    assert logged["sample_tokens"] == "300" and logged["url"] == "http://127.0.0.1:5000"
    assert "hunter2" not in str(logged) and "abc123" not in str(logged)


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/passwd", "plots/../../x", "C:/x"])
def test_artifact_paths_cannot_leave_the_run(store: Path, tmp_path: Path, bad: str) -> None:
    (tmp_path / "f.txt").write_text("x")
    with tracking.run("exp", "r") as run_id:
        with pytest.raises(ValueError, match="would leave the run's artifact folder"):
            tracking.log_artifact(run_id, tmp_path / "f.txt", bad)
        with pytest.raises(ValueError, match="would leave"):
            tracking.log_text(run_id, "x", bad)
        with pytest.raises(ValueError, match="would leave"):
            tracking.download(run_id, bad, tmp_path / "dst")
    assert not (tmp_path.parent / "escape.txt").exists()
