"""Model integrity: registration records the SHA-256 of every file of the MLflow model on the version, and every
loader (`rlgen play` and the other commands, `mlflow.pyfunc.load_model`) refuses a file changed in the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlparse

import mlflow
import pytest
from conftest import point_logs_at_stderr
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from rlgen.cli import app
from rlgen.errors import ModelIntegrityError
from rlgen.registry import family
from rlgen.serving.integrity import sha256

TINY = {"total_steps": 300, "learning_starts": 100, "train_every": 100, "gradient_steps": 2, "hidden": 8,
        "eval_episodes": 1, "val_episodes": 1, "eval_every": 0}  # fmt: skip
NAME = "dqn-CartPole-v1"


class Registered(NamedTuple):
    uri: str  # the store's tracking URI
    folder: Path  # the registered version's MLflow model folder in the store


@pytest.fixture(scope="module")
def registered(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registered]:
    """A tiny DQN policy trained and registered as version 1 in a store of its own."""
    from flows.models import flow_for

    point_logs_at_stderr()
    home = tmp_path_factory.mktemp("integrity")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLGEN_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        flow_for("dqn")(family("dqn").config.model_validate(TINY))
        uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
        client = MlflowClient(uri, uri)
        model_id = client.get_model_version(NAME, "1").source.removeprefix("models:/")
        folder = Path(unquote(urlparse(client.get_logged_model(model_id).artifact_location).path))
        yield Registered(uri, folder)


@pytest.fixture
def tampered(registered: Registered) -> Iterator[Path]:
    """The version's TorchScript file with one byte changed in the store, restored afterwards."""
    path = registered.folder / "artifacts" / "policy.pt"
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    yield path
    path.write_bytes(original)


def play(registered: Registered) -> CliRunner.Result:
    env = {"MLFLOW_TRACKING_URI": registered.uri, "COLUMNS": "400"}
    return CliRunner().invoke(app, ["play", "--model", NAME, "--episodes", "1"], env=env)


def test_every_file_of_a_registered_version_has_its_sha256_on_the_version(registered: Registered) -> None:
    tags = MlflowClient(registered.uri, registered.uri).get_model_version(NAME, "1").tags
    every = [p for p in registered.folder.rglob("*") if p.is_file() and p.name != "registered_model_meta"]  # MLflow's
    files = {p.relative_to(registered.folder).as_posix(): p for p in every}
    assert {"MLmodel", "policy.py", "artifacts/policy.pt"} <= set(files)
    assert {path: tags.get(f"rlgen.sha256.{path}") for path in files} == {p: sha256(f) for p, f in files.items()}
    result = play(registered)
    assert result.exit_code == 0, result.output + result.stderr


def test_rlgen_play_refuses_a_file_changed_in_the_store(registered: Registered, tampered: Path) -> None:
    result = play(registered)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert f"{NAME} version 1: its file artifacts/policy.pt has SHA-256" in message, message
    assert "changed in the store after registration" in message and "Register the model again" in message


def test_mlflow_pyfunc_refuses_a_file_changed_in_the_store(registered: Registered, tampered: Path) -> None:
    mlflow.set_tracking_uri(registered.uri)
    with pytest.raises(ModelIntegrityError, match=f"{NAME} version 1: its file artifacts/policy.pt has SHA-256"):
        mlflow.pyfunc.load_model(f"models:/{NAME}/1")


def test_a_planted_code_file_is_refused_before_it_runs(registered: Registered, tmp_path: Path) -> None:
    code = registered.folder / "policy.py"
    original = code.read_text()
    marker = tmp_path / "ran"
    code.write_text(f"open({str(marker)!r}, 'w').close()\n{original}")
    try:
        result = play(registered)
    finally:
        code.write_text(original)
    assert result.exit_code == 2, result.output
    assert "its file policy.py has SHA-256" in " ".join(result.stderr.split())
    assert not marker.exists(), "the planted code ran"


def test_a_version_whose_files_were_deleted_is_a_clear_error(registered: Registered, tmp_path: Path) -> None:
    away = tmp_path / "away"
    registered.folder.rename(away)  # the whole MLflow model folder deleted from the artifact store
    try:
        result = play(registered)
    finally:
        away.rename(registered.folder)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert (
        f"error: {NAME} version 1: its files are gone from the artifact store (looked in {registered.folder}" in message
    ), message
    assert "Register the model again (run its flow), or pick another version" in message
