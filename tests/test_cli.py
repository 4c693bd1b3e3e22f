"""CLI smoke tests: every command has --help, and `rlgen ui` serves the store on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from servers import free_port, wait_healthy
from typer.testing import CliRunner

from rlgen.cli import app
from rlgen.config import describe_fields
from rlgen.pipeline import commands

COMMANDS = commands()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        *(["run", name] for name in COMMANDS),
        ["play"],
        ["sample"],
        ["score"],
        ["generate"],
        ["serve"],
        ["runs"],
        ["ui"],
        ["serve-model"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_run_help_lists_every_key_with_its_default(name: str) -> None:
    out = CliRunner().invoke(app, ["run", name, "--help"], env={"COLUMNS": "200"}).output
    for key, default, description in describe_fields(COMMANDS[name].config):
        assert f"{key} = {default}" in out and description.split()[0] in out


def test_runs_on_an_empty_store(store: Path) -> None:
    result = CliRunner().invoke(app, ["runs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Recent runs" in result.output


def test_ui_serves_the_store_on_localhost(store: Path, tmp_path: Path) -> None:
    from rlgen import tracking
    from rlgen.registry import family
    from rlgen.tracking import promotion

    with tracking.run("rlgen", "vae-mnist-s1") as run_id:  # a run and a registered model with an alias to show
        tracking.log_metrics(run_id, {"eval/iw_nll": 99.0})
        (tmp_path / "model.pt").write_bytes(b"weights")
        tracking.log_artifact(run_id, tmp_path / "model.pt", "model")
        version = tracking.register_model(run_id, "model", "vae-mnist")
    promotion.promote(version, family("vae").primary, {"eval/iw_nll": 99.0}, "key")
    port = free_port()
    rlgen = Path(sys.executable).with_name("rlgen")
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(rlgen), "ui", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", server, log, timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        experiments = json.load(urllib.request.urlopen(f"{api}/experiments/search?max_results=10", timeout=10))[
            "experiments"
        ]
        (experiment,) = [e for e in experiments if e["name"] == "rlgen"]
        request = urllib.request.Request(
            f"{api}/runs/search",
            data=json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        (listed,) = json.load(urllib.request.urlopen(request, timeout=10))["runs"]
        assert listed["info"]["run_id"] == run_id and listed["info"]["status"] == "FINISHED"
        model = json.load(urllib.request.urlopen(f"{api}/registered-models/get?name=vae-mnist", timeout=10))[
            "registered_model"
        ]
        assert {"alias": "champion", "version": "1"} in model["aliases"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 128 + signal.SIGTERM
    with socket.socket() as s:  # SIGTERM stopped the server's workers too: nothing listens any more
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert (store / "mlflow.db").exists()
