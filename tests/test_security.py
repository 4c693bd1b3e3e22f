"""What the repository and the code promise about security: no credentials in the repository, Prefect's servers
on 127.0.0.1 by default, a file holding a pickle payload refused without running it (checkpoints and models),
models loaded only from the store or an explicit path. (The MLflow servers' bound addresses are observed in
test_secrets.py; masking logged secrets and keeping artifact paths inside the run are tested in test_tracking.py;
published ports in test_docker.py.)"""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rlgen.cli import app

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("rlgen", "tasks", "flows", "models", "benchmarks")

# Fake secrets that tests log on purpose, to prove they are masked; nothing else may look like a credential.
TEST_FAKES = {"hunter2", "abc123"}
CREDENTIALS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?P<value>[^/\s@'\"]+)@"),
    "secret assigned a literal": re.compile(
        r"(?i)\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)\b['\"]?\s*[:=]\s*['\"](?P<value>[^'\"\s]{6,})['\"]"
    ),
}
PLACEHOLDER = re.compile(
    r"^(?:\$\{?[A-Z_][A-Z0-9_]*.*|(?:\\?\*)+|\.\.\.|<[^>]*>|\{[^}]*\}|x+|changeme)$", re.IGNORECASE
)  # ${VAR}, ***


def repository_files() -> list[Path]:
    """Tracked files and new files not ignored: what a commit would contain."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ROOT / name for name in sorted(set(listed.split("\0"))) if name and (ROOT / name).is_file()]


def test_the_repository_holds_no_credentials() -> None:
    found = []
    files = repository_files()
    assert any(f.name == "compose.yaml" for f in files)  # the listing works
    for path in files:
        if path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for kind, pattern in CREDENTIALS.items():
            for match in pattern.finditer(text):
                value = match.groupdict().get("value")
                if value is not None and (
                    PLACEHOLDER.match(value) or value in TEST_FAKES or "{" in value or "(" in value
                ):
                    continue
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {kind}: {match.group(0)[:60]}")
    assert not found, "credentials in the repository:\n" + "\n".join(found)


def test_the_scan_would_find_a_credential() -> None:
    fake = "s3cr3t-" + "Pa55"  # assembled here, so that this file does not hold what it scans for
    leaked = [
        f'DB_URL = "postgresql://rlgen:{fake}@db:5432/mlflow"',
        f'api_key = "{fake}"',
        "AKIA" + "ABCDEFGHIJKLMNOP",
    ]
    for text in leaked:
        assert any(p.search(text) for p in CREDENTIALS.values()), text
    for text in ["postgresql://rlgen:${POSTGRES_PASSWORD:?set it}@postgres:5432/prefect", 'password: "***"']:
        matches = [m for p in CREDENTIALS.values() for m in p.finditer(text)]
        assert all(PLACEHOLDER.match(m.group("value")) or "{" in m.group("value") for m in matches), text


def test_prefect_servers_rlgen_starts_default_to_localhost() -> None:
    """Prefect's own settings; the MLflow servers' bound addresses are observed in test_secrets.py."""
    from prefect.settings import get_current_settings

    ui = {p.name: p for p in typer.main.get_command(app).commands["ui"].params}
    assert ui["host"].default == "127.0.0.1"  # `rlgen ui`: MLflow's server
    settings = get_current_settings()
    assert settings.server.api.host == "127.0.0.1"  # Prefect's embedded (ephemeral) server, started by `rlgen run`
    assert settings.runner.server.host in ("localhost", "127.0.0.1")  # `rlgen serve`: the runner's webserver


class Payload:
    """A pickle that runs code as it is loaded: it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_a_file_holding_a_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    import torch

    from rlgen.checkpoints.io import load_checkpoint

    marker = tmp_path / "the-payload-ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"step": 1, "model": Payload(marker)}, hostile)
    with pytest.raises(ValueError, match="is not a readable rlgen checkpoint"):
        load_checkpoint(hostile)  # --resume and retries read checkpoints this way
    for command in (["play", "--model", str(hostile)], ["sample", "--model", str(hostile), "--n", "1"]):
        result = CliRunner().invoke(app, command, env={"COLUMNS": "400"})
        assert result.exit_code == 2 and "is not a loadable TorchScript file" in result.stderr, result.output
    assert not marker.exists(), "the pickle payload ran"


def test_models_load_only_from_the_store_or_an_explicit_file(tmp_path: Path) -> None:
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"junk")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/policy.pt"
        result = CliRunner().invoke(app, ["play", "--model", url], env={"COLUMNS": "400"})
        assert result.exit_code == 2 and "no TorchScript file at" in result.stderr
        assert requests == []  # a URL is not a source of models: nothing was fetched
    finally:
        server.shutdown()
        server.server_close()
