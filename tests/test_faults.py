"""Bad input and bad environment: each is refused before any work, with exit status 2 and one paragraph that
names the problem and the fix, and nothing is left behind (no MLflow run, no half-written file).

Most checks run the CLI in this process (CliRunner: the same code, no start-up cost); a few run the real
`rlgen` console script, for the faults that live in the environment the process starts with.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rlgen import preflight
from rlgen.checkpoints.io import load_checkpoint, save_checkpoint
from rlgen.cli import app
from rlgen.config import ConfigError, validate_config
from rlgen.errors import DataError
from rlgen.export.torchscript import script_module
from rlgen.pipeline import commands

COMMANDS = commands()

RLGEN = Path(sys.executable).with_name("rlgen")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL_COMMANDS = {  # the commands that load a model, with the arguments they need besides --model
    "play": ["--episodes", "1"],
    "sample": ["--n", "4"],
    "generate": ["--tokens", "5"],
    "score": ["x.png"],
}


def assert_user_error(stderr: str, *fragments: str) -> None:
    """Exit-2 output: one `error:` paragraph (no traceback) that contains every fragment."""
    assert "Traceback" not in stderr, stderr
    (message,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def invoke(*args: str) -> CliRunner.Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def rlgen(home: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """The real console script with RLGEN_HOME=home and `env`, no servers unless given; (result, seconds)."""
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    start = time.monotonic()
    done = subprocess.run(
        [str(RLGEN), *args],
        env={**base, "RLGEN_HOME": str(home), "COLUMNS": "400", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - start


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runs_in(store: Path) -> int:
    """How many MLflow runs the embedded store holds (0 if it was never created)."""
    if not (store / "mlflow.db").exists():
        return 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


# --------------------------------------------------------------------------- invalid config, every command


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_refuses_unknown_keys_and_invalid_values(name: str, store: Path) -> None:
    config = COMMANDS[name].config
    with pytest.raises(
        ConfigError,
        match=rf"Invalid {name} configuration: unknown key 'colour' \(known keys: .*seed.*rlgen run {name} --help",
    ):
        validate_config(config, {"colour": "blue"})
    with pytest.raises(ConfigError, match=r"seed: Input should be greater than or equal to 0 \(got '-1'\)"):
        validate_config(config, {"seed": "-1"})
    result = invoke("run", name, "--set", "colour=blue", "--set", "seed=-1")
    assert result.exit_code == 2
    assert_user_error(
        result.stderr,
        "unknown key 'colour'",
        "seed: Input should be greater than or equal to 0",
        f"rlgen run {name} --help",
    )
    assert not store.exists()


def test_the_console_script_refuses_a_bad_config_at_once(tmp_path: Path) -> None:
    done, seconds = rlgen(tmp_path, "run", "gan", "--set", "epochs=0", "--set", "colour=blue")
    assert done.returncode == 2
    assert_user_error(
        done.stderr, "Invalid gan configuration", "epochs: Input should be greater than 0", "unknown key 'colour'"
    )
    assert seconds < 30 and not (tmp_path / "mlruns").exists() and not (tmp_path / "data").exists()


# --------------------------------------------------------------------------- missing, truncated, corrupt data


# The flows run in this process: the console script would spend 10-40 s importing torch and starting the flow
# for the same path, which test_flow_images.py already takes with a missing data folder (DataError -> exit 2).


@pytest.mark.skipif(not (SHARED / "mnist" / "raw").is_dir(), reason=f"no MNIST files in {SHARED}")
def test_a_truncated_mnist_file_is_refused_before_training(prefect_server: str, store: Path, tmp_path: Path) -> None:
    data = tmp_path / "mnist"
    shutil.copytree(SHARED / "mnist" / "raw", data)
    images = data / "t10k-images-idx3-ubyte.gz"
    images.chmod(0o644)
    images.write_bytes(images.read_bytes()[:100_000])
    config = validate_config(COMMANDS["vae"].config, {"data_dir": str(data)})
    start = time.monotonic()
    with pytest.raises(DataError, match=rf"{images} is corrupt gzip data .*Delete it and download it again"):
        COMMANDS["vae"].load_flow()(config)
    assert time.monotonic() - start < 30  # not retried (three tries would wait 10 s)
    assert runs_in(store) == 0 and not list((store.parent / "data").rglob("*.pt"))  # no run, no cache file


@pytest.mark.skipif(not (SHARED / "tinyshakespeare" / "input.txt").is_file(), reason=f"no Tiny Shakespeare in {SHARED}")
def test_a_corrupt_corpus_is_refused_before_training(prefect_server: str, store: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "input.txt"
    text = bytearray((SHARED / "tinyshakespeare" / "input.txt").read_bytes())
    text[5000:5004] = b"XXXX"  # four damaged characters
    corpus.write_bytes(bytes(text))
    config = validate_config(COMMANDS["lm"].config, {"corpus_path": str(corpus)})
    start = time.monotonic()
    with pytest.raises(DataError, match=rf"{corpus} has SHA-256 \w+, expected 86c4e6aa.*pass --set corpus=custom"):
        COMMANDS["lm"].load_flow()(config)  # the flow in this process; the CLI turns a DataError into exit 2, as above
    assert time.monotonic() - start < 30  # no retries of bad local data
    assert runs_in(store) == 0 and not list((store.parent / "data").rglob("*.pt"))


def test_user_errors_in_a_flow_are_logged_without_a_traceback() -> None:
    """What Prefect's loggers write: a user error's message without its traceback, a bug's with it."""
    import io
    import logging

    preflight.quiet_user_errors()
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger, out = logging.getLogger(name), io.StringIO()
        handler = logging.StreamHandler(out)
        logger.addHandler(handler)
        try:
            for error in (DataError("bad file"), ConfigError("bad key"), RuntimeError("a bug")):
                try:
                    raise error
                except Exception:
                    logger.exception("Finished in state Failed: %s", error)
        finally:
            logger.removeHandler(handler)
        written = out.getvalue()
        assert "Failed: bad file\n" in written and "Failed: bad key\n" in written, written
        assert written.count("Traceback (most recent call last)") == 1, written  # the bug's alone
        assert "RuntimeError: a bug" in written.split("Failed: a bug", 1)[1], written


def test_only_failed_downloads_are_retried() -> None:
    from prefect.states import Failed

    from rlgen.errors import DownloadError
    from tasks.model import retry_only_downloads

    retried = {
        type(e).__name__: retry_only_downloads(None, None, Failed(data=e))
        for e in (DownloadError("network"), DataError("truncated"), ConfigError("bad"), OSError("disk"))
    }
    assert retried == {"DownloadError": True, "DataError": False, "ConfigError": False, "OSError": True}


# --------------------------------------------------------------------------- unknown models, corrupt model files


@pytest.fixture
def registered(store: Path, tmp_path: Path) -> str:
    """A registered model `vae-mnist` with one version, aliased champion."""
    from rlgen import tracking

    with tracking.run("rlgen", "vae-mnist-s1") as run_id:
        (tmp_path / "model.pt").write_bytes(b"weights")
        tracking.log_artifact(run_id, tmp_path / "model.pt", "model")
        version = tracking.register_model(run_id, "model", "vae-mnist")
    tracking.set_alias("vae-mnist", "champion", version.version)
    return "vae-mnist"


def test_unknown_model_names_and_aliases_list_what_exists(registered: str, store: Path) -> None:
    before = runs_in(store)
    for command, args in MODEL_COMMANDS.items():  # one store for all four: creating one costs seconds
        unknown = invoke(command, "--model", "no-such-model", *args)
        assert unknown.exit_code == 2, command
        assert_user_error(
            unknown.stderr,
            "No registered model or run called 'no-such-model'",
            "registered models: vae-mnist",
            "Pass NAME, NAME@ALIAS, NAME/VERSION or a run id",
        )
    for command, reference in (("sample", "vae-mnist@best"), ("score", "vae-mnist/7")):  # one lookup serves all four
        result = invoke(command, "--model", reference, *MODEL_COMMANDS[command])
        assert result.exit_code == 2, (command, reference)
        assert_user_error(
            result.stderr, f"called {reference!r}", "vae-mnist has aliases: champion (version 1); versions: 1"
        )
    assert runs_in(store) == before  # looking up a model starts no run


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_looking_up_a_model_in_an_empty_home_creates_no_store(command: str, store: Path) -> None:
    result = invoke(command, "--model", "lm-char-tinyshakespeare", *MODEL_COMMANDS[command])
    assert result.exit_code == 2
    assert_user_error(
        result.stderr,
        "No registered model or run called 'lm-char-tinyshakespeare'",
        f"there is no MLflow store at {store} yet",
        "Train a model first",
    )
    assert not store.exists()


@pytest.fixture
def bad_model_files(tmp_path: Path) -> dict[str, Path]:
    """A file of junk, a truncated TorchScript file, and a training checkpoint where an export is expected."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    scripted = script_module(torch.nn.Identity(), tmp_path / "whole.pt", {"family": "vae"})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(scripted.read_bytes()[:-200])
    checkpoint = save_checkpoint(
        tmp_path / "checkpoint.pt", {"config": {}, "model": torch.nn.Linear(2, 2).state_dict(), "step": 3}
    )
    return {"junk": junk, "truncated": truncated, "checkpoint": checkpoint}


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_corrupt_model_files_are_refused(command: str, bad_model_files: dict[str, Path], store: Path) -> None:
    reasons = {
        "junk": "not a ZIP archive",
        "truncated": "failed finding central directory",
        "checkpoint": "it is a torch.save file",
    }
    for kind, path in bad_model_files.items():
        result = invoke(command, "--model", str(path), *MODEL_COMMANDS[command])
        assert result.exit_code == 2
        assert_user_error(
            result.stderr,
            f"{path} is not a loadable TorchScript file",
            reasons[kind],
            "or the file `rlgen run` exported (artifacts/model.pt",
        )
    assert not store.exists()  # an explicit file needs no store


class Payload:
    """Unpickling this would run code (writes a file); weights_only loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_corrupt_checkpoints_are_refused_and_never_run_code(tmp_path: Path) -> None:
    good = save_checkpoint(
        tmp_path / "good.pt", {"config": {"seed": 1}, "model": torch.nn.Linear(3, 2).state_dict(), "step": 5}
    )
    assert load_checkpoint(good)["step"] == 5
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00 not a checkpoint")
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"model": Payload(marker)}, hostile)
    for path in (truncated, junk, hostile):
        with pytest.raises(ValueError, match=rf"{path} is not a readable rlgen checkpoint"):
            load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


# --------------------------------------------------------------------------- unwritable store


def test_the_console_script_refuses_an_unwritable_store(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done, seconds = rlgen(blocker / "home", "run", "dqn")
    assert done.returncode == 2 and seconds < 30
    assert_user_error(
        done.stderr,
        f"The embedded MLflow store at {blocker}/home/mlruns cannot be created",
        f"{blocker} is a file, not a folder",
        "point RLGEN_HOME at a writable folder",
        "Nothing was started",
    )
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("where", ["under a file", "in /proc", "sqlite under a file", "data dir under a file"])
def test_unwritable_stores_and_folders_are_refused(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("RLGEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RLGEN_DATA_DIR", raising=False)
    expected = {
        "under a file": ("RLGEN_HOME", str(blocker / "home"), f"{blocker} is a file, not a folder"),
        "in /proc": ("RLGEN_HOME", "/proc/rlgen-home", "/proc cannot be written"),
        "sqlite under a file": (
            "MLFLOW_TRACKING_URI",
            f"sqlite:///{blocker}/mlflow.db",
            "sqlite:/// path in a writable folder",
        ),
        "data dir under a file": ("RLGEN_DATA_DIR", str(blocker / "data"), "The data folder at"),
    }
    variable, value, message = expected[where]
    monkeypatch.setenv(variable, value)
    with pytest.raises(preflight.PreflightError, match=message.replace("/", ".")):
        preflight.check_run(COMMANDS["vae"].config)
    if where != "data dir under a file":  # a registered model's name needs the store too
        result = invoke("sample", "--model", "vae-mnist")
        assert result.exit_code == 2
        assert_user_error(result.stderr, message)
    assert not (tmp_path / "home").exists() and blocker.read_text() == "x"


# --------------------------------------------------------------------------- servers that do not answer


@pytest.mark.parametrize("server", ["mlflow", "prefect"])
def test_the_console_script_fails_fast_when_a_server_does_not_answer(server: str, tmp_path: Path) -> None:
    port = closed_port()
    env = (
        {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
        if server == "mlflow"
        else {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    )
    done, seconds = rlgen(tmp_path, "run", "dqn", **env)
    assert done.returncode == 2 and seconds < 30, (seconds, done.stderr)
    url = next(iter(env.values()))
    what = "The MLflow tracking server" if server == "mlflow" else "The Prefect API"
    assert_user_error(done.stderr, f"{what} at {url} does not answer (Connection refused", "Nothing was started")
    assert not (tmp_path / "mlruns").exists()  # no local store, no run


@pytest.fixture
def http_server() -> Iterator[callable]:
    """start(status) -> URL of a local server that answers every GET with `status`."""
    servers = []

    def start(status: int) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "problem"), [(200, None), (401, None), (404, "HTTP 404: something else"), (503, "HTTP 503")]
)
def test_a_server_counts_as_up_when_it_answers_as_one(
    http_server, monkeypatch: pytest.MonkeyPatch, status: int, problem: str | None
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", http_server(status))
    if problem is None:
        preflight.check_tracking()  # 401: up, behind authentication
    else:
        with pytest.raises(preflight.PreflightError, match=problem):
            preflight.check_tracking()


def test_a_server_that_accepts_but_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:  # listens (connections complete) but never reads or replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv(preflight.TIMEOUT_ENV, "0.5")
        start = time.monotonic()
        with pytest.raises(
            preflight.PreflightError,
            match=rf"at {url} does not answer \(timed out; tried GET {url}/health within 0.5 s\)",
        ):
            preflight.check_tracking()
        assert time.monotonic() - start < 3


def test_a_database_backend_that_does_not_answer_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://rlgen:hunter2@127.0.0.1:{port}/mlflow")
    with pytest.raises(
        preflight.PreflightError,
        match=rf"database at postgresql://rlgen:\*\*\*@127.0.0.1:{port}/mlflow does not answer",
    ) as err:
        preflight.check_tracking()
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("command", ["play", "generate", "runs"])
def test_model_commands_fail_fast_when_mlflow_does_not_answer(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    start = time.monotonic()
    result = invoke(command, *(["--model", "dqn-CartPole-v1"] if command != "runs" else []))
    assert result.exit_code == 2 and time.monotonic() - start < 10
    assert_user_error(result.stderr, f"The MLflow tracking server at {url} does not answer")
