"""The tracking server goes away: a real `mlflow server` on 127.0.0.1 is killed and restarted during a training.

Training goes on while the server is away, its metrics wait in the run's journal beside the checkpoint, and the
history afterwards holds every logged step once, as the run's own record (the curves in its checkpoint) has
them. A run that ends while the server is still away exits with an error naming the server and the journal,
and `rlgen sync RUN_ID` delivers the rest once the server is back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from servers import free_port, wait_healthy
from typer.testing import CliRunner

from rlgen import steps, tracking
from rlgen.checkpoints.io import load_checkpoint, run_checkpoint_path
from rlgen.cli import app
from rlgen.families.dqn import DQNConfig
from rlgen.tracking.journal import MetricJournal

BIN = Path(sys.executable).parent
DQN = {
    "learning_starts": 200,
    "train_every": 50,
    "gradient_steps": 2,
    "hidden": 16,
    "eval_every": 10**6,
    "val_episodes": 1,
    "eval_episodes": 1,
    "log_every": 500,
    "target_update_every": 100,
    "checkpoint_every": 5000,
}


class Server:
    """An MLflow server over a SQLite store in a folder; killed (SIGKILL) and started again on the same port."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.home / "mlflow.log"
        command = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.home / 'mlflow.db'}",
                   "--default-artifact-root", (self.home / "artifacts").as_uri(), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1"]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PATH": f"{BIN}:{os.environ['PATH']}"}
        with log.open("a") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_healthy(f"{self.url}/health", self.process, log)

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the server and its uvicorn worker, at once
        self.process.wait()


@pytest.fixture
def server(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A fresh MLflow server that rlgen tracks to; checkpoints and journals stay under the test's RLGEN_HOME."""
    (tmp_path / "server").mkdir()
    served = Server(tmp_path / "server")
    served.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.url)
    monkeypatch.setenv("RLGEN_PREFLIGHT_TIMEOUT", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield served
    finally:
        torch.set_num_threads(threads)
        served.kill()


def wait_for(condition, what: str, timeout: float = 120) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def stored_steps(run_id: str, key: str) -> list[int]:
    return [s for s, _ in tracking.metric_history(run_id, key)]


def assert_whole_history(run_id: str, total_steps: int) -> None:
    """Every key's stored steps are what the run logged (its checkpoint's curves): no gap, no duplicate."""
    curves = load_checkpoint(run_checkpoint_path(run_id))["curves"]
    assert stored_steps(run_id, "train/loss") == list(range(500, total_steps + 1, 500))
    for key, logged in curves.items():
        assert tracking.metric_history(run_id, key) == sorted(logged), key


def test_training_outlives_a_tracking_server_that_is_killed_and_restarted(server: Server) -> None:
    cfg = DQNConfig(**DQN, total_steps=60_000)
    spec = steps.prepare(cfg)
    failures: list[BaseException] = []
    with tracking.run("rlgen", "outage") as run_id:

        def train() -> None:
            try:
                steps.train_model(cfg, spec, run_id)
            except BaseException as err:
                failures.append(err)

        trainer = threading.Thread(target=train)
        trainer.start()
        wait_for(lambda: len(stored_steps(run_id, "train/loss")) >= 2, "training logged to the server")
        server.kill()
        journal = MetricJournal(run_id)  # the server is gone: the rows go to the journal
        wait_for(lambda: journal.last_steps().get("train/loss", 0) >= 10_000, "training went on without the server")
        assert trainer.is_alive(), "training ended before the server came back; raise total_steps"
        server.start()
        trainer.join(timeout=300)
        assert not failures, failures
    assert tracking.get_run(run_id).info.status == "FINISHED"
    assert_whole_history(run_id, cfg.total_steps)
    assert not MetricJournal(run_id).path.exists()  # delivered, and removed


TRAIN_IN_SUBPROCESS = """
import sys
from rlgen import steps, tracking
from rlgen.families.dqn import DQNConfig
cfg = DQNConfig.model_validate_json(sys.argv[1])
with tracking.run("rlgen", "ends-while-away", tags={"rlgen.family": "dqn", "rlgen.role": "train"}) as run_id:
    open(sys.argv[2], "w").write(run_id)
    steps.train_model(cfg, steps.prepare(cfg), run_id)
"""


def test_a_run_that_ends_while_the_server_is_away_says_so_and_rlgen_sync_delivers_the_rest(
    server: Server, tmp_path: Path
) -> None:
    cfg = DQNConfig(**DQN, total_steps=20_000)
    id_file = tmp_path / "run_id"
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN_IN_SUBPROCESS, cfg.model_dump_json(), str(id_file)],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: id_file.is_file() and stored_steps(id_file.read_text(), "train/loss"), "a metric was stored")
        server.kill()
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    run_id, journal = id_file.read_text(), MetricJournal(id_file.read_text())
    message = " ".join(stderr.split())
    assert process.returncode == 1, message[-3000:]
    assert f"did not reach the MLflow tracking store at {server.url}" in message
    assert f"they are kept, in order, in the journal {journal.path}" in message
    assert f"rlgen sync {run_id}" in message
    assert journal.last_steps()["train/loss"] == cfg.total_steps

    server.start()
    synced = CliRunner().invoke(app, ["sync", run_id], env={"COLUMNS": "400"})
    assert synced.exit_code == 0, synced.output
    assert f"run {run_id}: " in synced.output and "metric rows delivered" in synced.output
    assert_whole_history(run_id, cfg.total_steps)
    run = tracking.get_run(run_id)
    assert run.info.status == "FAILED" and "is gone" in run.data.tags["rlgen.crashed"]  # closed, since it ended
    again = CliRunner().invoke(app, ["sync", run_id], env={"COLUMNS": "400"})
    assert "0 metric rows delivered" in again.output  # nothing twice
