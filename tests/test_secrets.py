"""Secrets are never printed and servers are not exposed unawares, checked by behaviour on real servers: the store
reaches `rlgen ui`'s MLflow server through its environment (not /proc/<pid>/cmdline), it listens on 127.0.0.1
unless told otherwise (then it warns), a port already in use is refused, and a password inside
MLFLOW_TRACKING_URI appears in no output of a training, `rlgen runs`, an error, or the pipeline report."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from mlflow.tracking import MlflowClient
from servers import command_lines, free_port, listening, stop_group, wait_healthy
from typer.testing import CliRunner

from rlgen.cli import app

RLGEN = Path(sys.executable).with_name("rlgen")
PASSWORD = "hunter2"  # a test fake (tests/test_security.py TEST_FAKES)
TINY_DQN = ["total_steps=200", "learning_starts=100", "train_every=100", "gradient_steps=1", "hidden=8",
            "eval_episodes=1", "val_episodes=1", "eval_every=0"]  # fmt: skip


class Ui(NamedTuple):
    process: subprocess.Popen
    port: int
    home: Path  # its RLGEN_HOME: the store is home/mlruns
    log: Path


def start_ui(home: Path, *args: str) -> Ui:
    """`rlgen ui` over the embedded store in `home`, in a session of its own, once /health answers."""
    port = free_port()
    log = home.with_suffix(".log")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"RLGEN_HOME": str(home)}
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(RLGEN), "ui", "--port", str(port), *args], env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process, log, timeout=120)
    except BaseException:
        stop_group(process)
        raise
    return Ui(process, port, home, log)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """One `rlgen ui` on 127.0.0.1 for the module: the server under test, and the store the commands write to."""
    started = start_ui(tmp_path_factory.mktemp("ui") / "server")
    yield started
    stop_group(started.process)


def test_ui_keeps_the_store_off_command_lines_listens_on_loopback_and_refuses_a_used_port(ui: Ui) -> None:
    store = str(ui.home / "mlruns")
    lines = command_lines(ui.process.pid)
    assert any("mlflow" in line and " server " in line for line in lines), lines  # the MLflow server is there
    assert not [line for line in lines if store in line], f"the store's path is on a command line: {lines}"
    assert listening(ui.process.pid, ui.port) == {"127.0.0.1"}
    assert "warning" not in ui.log.read_text()
    again = CliRunner().invoke(app, ["ui", "--port", str(ui.port)], env={"COLUMNS": "400"})
    assert again.exit_code == 2, again.output
    message = " ".join(again.stderr.split())
    assert f"error: The MLflow UI cannot listen on 127.0.0.1:{ui.port}: Address already in use" in message, message
    assert f"pass --port with a free port (e.g. --port {ui.port + 1})" in message


def test_ui_on_every_interface_warns_that_it_has_no_authentication(tmp_path: Path) -> None:
    ui = start_ui(tmp_path / "open", "--host", "0.0.0.0")
    try:
        assert listening(ui.process.pid, ui.port) == {"0.0.0.0"}
        text = " ".join(ui.log.read_text().split())
        assert (
            f"warning: The MLflow UI (the whole tracking store and model registry) listens on 0.0.0.0:{ui.port}" in text
        )
        assert "has no authentication" in text and "Bind 127.0.0.1 (the default)" in text
    finally:
        stop_group(ui.process)


def test_a_password_in_the_tracking_uri_is_never_printed(
    ui: Ui, rlgen: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"http://rlgen:{PASSWORD}@127.0.0.1:{ui.port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    printed = []
    trained = rlgen("run", "dqn", *(a for key in TINY_DQN for a in ("--set", key)))
    printed += [trained.stdout, trained.stderr]
    listed = rlgen("runs")
    assert f"http://rlgen:***@127.0.0.1:{ui.port}" in " ".join(listed.stdout.split())
    printed += [listed.stdout, listed.stderr]
    unknown = rlgen("play", "--model", "no-such-model", expect=2)
    assert "rlgen:***@" in unknown.stderr
    printed += [unknown.stdout, unknown.stderr]
    report = pipeline_report(uri)
    printed.append(report)
    leaks = [text for text in printed if PASSWORD in text]
    assert not leaks, f"the password is printed:\n{leaks[0]}"
    client = MlflowClient(f"http://127.0.0.1:{ui.port}")
    run = client.search_runs(client.get_experiment_by_name("rlgen").experiment_id, max_results=1)[0]
    assert PASSWORD not in str(run.data.params) + str(run.data.tags)


def pipeline_report(uri: str) -> str:
    """The pipeline report (Markdown and HTML, as logged on the run) of a branch that failed quoting the URI."""
    from rlgen import tracking
    from rlgen.pipeline import PipelineConfig
    from rlgen.pipeline.branches import BranchResult
    from rlgen.pipeline.report import write_report

    failed = BranchResult("dqn", "dqn", False, 1.0, None, f"ConnectionError: {uri}/api/2.0 refused the request")
    with tracking.run("rlgen", "pipeline-report") as parent_id:
        text = write_report(PipelineConfig(), [failed], parent_id)
        html = tracking.download(parent_id, "report/report.html", Path(os.environ["RLGEN_HOME"]))
    assert "rlgen:***@127.0.0.1" in text
    return text + html.read_text()
