"""What the repository and the code promise about security, checked on the source itself: no credentials in
the repository, servers bound to 127.0.0.1 by default, checkpoints loaded with weights_only=True, models
loaded only from the store or an explicit path. (Masking logged secrets and keeping artifact paths inside
the run are tested in test_tracking.py; published ports in test_docker.py.)"""

from __future__ import annotations

import ast
import http.server
import re
import subprocess
import threading
from pathlib import Path

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


def test_every_server_rlgen_starts_binds_to_localhost_by_default() -> None:
    from prefect.settings import get_current_settings

    ui = {p.name: p for p in typer.main.get_command(app).commands["ui"].params}
    assert ui["host"].default == "127.0.0.1"  # `rlgen ui`: MLflow's server
    settings = get_current_settings()
    assert settings.server.api.host == "127.0.0.1"  # Prefect's embedded (ephemeral) server, started by `rlgen run`
    assert settings.runner.server.host in (
        "localhost",
        "127.0.0.1",
    )  # `rlgen serve`: the runner's webserver, if enabled
    for folder in SOURCE_DIRS:  # no code of ours binds every interface
        for path in (ROOT / folder).rglob("*.py"):
            assert "0.0.0.0" not in path.read_text(), f"{path.relative_to(ROOT)} binds 0.0.0.0"


def python_sources() -> list[Path]:
    return [p for folder in (*SOURCE_DIRS, "tests") for p in (ROOT / folder).rglob("*.py")]


def test_checkpoints_load_with_weights_only_and_models_only_through_the_loader() -> None:
    unsafe = []
    for path in python_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name == "torch.load":
                keywords = {k.arg: k.value for k in node.keywords}
                if not (
                    isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
                ):
                    unsafe.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load"):
                unsafe.append(f"{where}:{node.lineno}: {name}")
            elif name in ("torch.jit.load", "torch.export.load") and not where.startswith(
                ("rlgen/export/", "benchmarks/", "tests/")
            ):
                unsafe.append(
                    f"{where}:{node.lineno}: {name} outside rlgen/export/ (the one loader of exported models)"
                )
    assert not unsafe, "\n".join(unsafe)


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
