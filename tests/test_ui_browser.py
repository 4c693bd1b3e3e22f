"""`rlgen ui` in a real headless Chromium (Debian's chromium package): the page renders the experiment and its run.

`make test` installs chromium when /usr/bin/chromium is missing; without it this test fails, it does not skip.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import free_port, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [  # headless, as root, offline: no sandbox, GPU, QUIC, first-run UI or background traffic
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
    "--window-size=1400,900",
]


@pytest.fixture
def ui_url(store: Path, tmp_path: Path) -> Iterator[str]:
    """`rlgen ui` on a free port over the test's store; yields its URL once /health answers."""
    port = free_port()
    rlgen = Path(sys.executable).with_name("rlgen")
    env = dict(os.environ)
    # A session of its own: stopping it stops the mlflow server and its workers too, not just `rlgen ui`. Its log
    # goes to a file: a pipe nobody reads would fill with the access log of the page's requests and stall the server.
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(rlgen), "ui", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/health", server, log, timeout=120)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def chromium(url: str, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once on `url` with a fresh profile; fail with its stderr if it fails."""
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
    done = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def test_mlflow_ui_renders_the_experiment_in_chromium(store: Path, ui_url: str, tmp_path: Path) -> None:
    from rlgen import tracking

    with tracking.run("rlgen-browser-test", "vae-mnist-s7") as run_id:
        tracking.log_metrics(run_id, {"eval/iw_nll": 99.0})
    page = f"{ui_url}/#/experiments/{tracking.experiment_id('rlgen-browser-test')}/runs"
    with urllib.request.urlopen(ui_url, timeout=10) as response:
        assert "rlgen-browser-test" not in response.read().decode()  # the HTML shell alone does not name it

    screenshot = tmp_path / "mlflow-ui.png"  # one page load gives both the DOM and the screenshot (saves a load)
    dom = chromium(page, tmp_path / "profile", "--dump-dom", f"--screenshot={screenshot}").stdout
    assert "rlgen-browser-test" in dom and "vae-mnist-s7" in dom  # rendered by the React app from the REST API
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{screenshot}: {len(data)} bytes"


def test_a_registered_version_shows_its_signature_in_chromium(store: Path, ui_url: str, tmp_path: Path) -> None:
    from models import dqn
    from rlgen import tracking
    from rlgen.export.torchscript import script_module
    from rlgen.serving.mlflow_model import log_model

    env = {"env_id": "CartPole-v1", "obs_mode": "state", "frame_stack": 2, "height": 40, "width": 60}
    metadata = {"family": "dqn", "interface": "play", "obs_shape": [4], "n_actions": 2, "env": env}
    policy = script_module(dqn.GreedyPolicy(dqn.QNetwork(4, 2, 8)), tmp_path / "policy.pt", metadata)
    with tracking.run("rlgen-browser-test", "policy") as run_id:
        model = log_model(run_id, "play", [policy], metadata, 0, "browser-policy")
        tracking.register_model(run_id, model.uri, "browser-policy")
    dom = chromium(f"{ui_url}/#/models/browser-policy/versions/1", tmp_path / "profile", "--dump-dom").stdout
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script|svg).*?</\1>", " ", dom, flags=re.S))
    assert "Registered Models" in text and "Version 1" in text and "Source Model" in text, text[:2000]
    assert re.search(r"Schema\s+Name\s+Type\s+Inputs \(1\)\s+Outputs \(1\)", text), text[:2000]  # its signature
