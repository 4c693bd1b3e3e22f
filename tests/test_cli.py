"""CLI smoke tests: every command has --help, and `rlgen ui` serves the store on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlgen.cli import app
from rlgen.registry import MODELS


@pytest.mark.parametrize("command", [[], ["run"], *(["run", name] for name in MODELS), ["play"], ["sample"], ["score"], ["runs"], ["ui"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("name", list(MODELS))
def test_run_help_lists_every_key_with_its_default(name: str) -> None:
    out = CliRunner().invoke(app, ["run", name, "--help"], env={"COLUMNS": "200"}).output
    for key, field in MODELS[name].config.model_fields.items():
        assert f"{key} = {field.default!r}" in out


def test_runs_on_an_empty_store(store: Path) -> None:
    result = CliRunner().invoke(app, ["runs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Recent runs" in result.output


def test_ui_serves_the_store_on_localhost(store: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rlgen = Path(sys.executable).with_name("rlgen")
    server = subprocess.Popen([str(rlgen), "ui", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the MLflow UI did not answer within 120 s"
                time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (store / "mlflow.db").exists()
