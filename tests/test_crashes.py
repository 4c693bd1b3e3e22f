"""Crashed runs are seen and closed: heartbeats, `rlgen runs`, the Prefect flow run, and the run lock.

A flow killed with kill -9 in a real subprocess (against the session's Prefect server and a temporary MLflow
store) is shown as CRASHED by `rlgen runs`, which marks its MLflow runs FAILED with the reason and the step of
its last checkpoint, and its Prefect flow run Crashed. A run on another host is judged by its heartbeat's age.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlgen import tracking
from rlgen.checkpoints.io import run_checkpoint_path, save_checkpoint
from rlgen.cli import app
from rlgen.tracking import heartbeat
from rlgen.tracking.crashes import close_crashed

DOOMED_FLOW = """
import sys, time
from pathlib import Path
from prefect import flow
from rlgen.checkpoints.io import run_checkpoint_path, save_checkpoint
from rlgen.families.gan import GANConfig
from rlgen.tracking import heartbeat
from rlgen.tracking.lifecycle import tracked_run

@flow(name="doomed")
def doomed() -> None:
    cfg = GANConfig()
    with tracked_run(cfg, "doomed") as parent, tracked_run(cfg, "doomed", parent, role="train") as train:
        save_checkpoint(run_checkpoint_path(train), {"step": 7})
        heartbeat.note_checkpoint(train, 7)
        Path(sys.argv[1]).write_text(parent + " " + train)
        time.sleep(600)

doomed()
"""


def rlgen(*args: str, code: int = 0) -> str:
    """`rlgen ARGS` in this process; its output on one line."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def test_a_flow_killed_with_sigkill_is_shown_crashed_and_closed_with_its_prefect_flow_run(
    prefect_server: str, store: Path, tmp_path: Path
) -> None:
    ids = tmp_path / "ids"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "RLGEN_HOME": str(store.parent)}
    process = subprocess.Popen([sys.executable, "-c", DOOMED_FLOW, str(ids)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not ids.is_file():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the flow never opened its runs"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    killed = time.monotonic()
    parent_id, train_id = ids.read_text().split()
    assert tracking.get_run(train_id).info.status == "RUNNING"  # kill -9 left no chance to close it

    shown = rlgen("runs")
    detected = time.monotonic() - killed
    assert shown.count("CRASHED") == 2 and train_id in shown and parent_id in shown
    assert detected < 30, f"detection took {detected:.1f} s"  # same host: the process is gone, no timeout to wait
    train, parent = tracking.get_run(train_id), tracking.get_run(parent_id)
    assert train.info.status == parent.info.status == "FAILED"
    reason = train.data.tags[heartbeat.CRASHED_TAG]
    assert "is gone" in reason and "last checkpoint is at step 7" in reason
    assert f"rlgen run gan --resume {train_id}" in reason and reason in shown
    assert "holds no checkpoint itself" in parent.data.tags[heartbeat.CRASHED_TAG]

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(train.data.tags["prefect.flow_run_id"])
    assert flow_run.state is not None and flow_run.state.type.value == "CRASHED", flow_run.state
    assert "is gone" in (flow_run.state.message or "")
    assert "CRASHED" in rlgen("runs")  # still shown as crashed later, and not closed twice
    assert close_crashed() == []


def test_a_run_elsewhere_is_crashed_only_once_its_heartbeat_is_older_than_the_timeout(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(heartbeat.TIMEOUT_ENV, "1.5")
    monkeypatch.setenv(heartbeat.INTERVAL_ENV, "0.2")
    with tracking.run("rlgen", "alive") as alive_id:  # this process beats for it; another host's run beats no more:
        with tracking.run("rlgen", "elsewhere") as elsewhere_id:
            heartbeat.stop(elsewhere_id)
            time.sleep(1)  # a beat under way when it stopped has landed
            beat = heartbeat.Beat(time.time(), "another-host:4242", 500)
            tracking.set_tags(elsewhere_id, {heartbeat.HEARTBEAT_TAG: heartbeat.encode(beat)})
            assert close_crashed() == []  # its heartbeat is fresh: another host's process cannot be checked
            time.sleep(2.5)
            closed = close_crashed()
            assert [c.run_id for c in closed] == [elsewhere_id]  # the live run beat meanwhile; this one did not
            assert "heartbeat stopped" in closed[0].reason and "RLGEN_HEARTBEAT_TIMEOUT=1.5 s" in closed[0].reason
            assert "last checkpoint is at step 500" in closed[0].reason
            assert tracking.get_run(elsewhere_id).info.status == "FAILED"
        assert tracking.get_run(alive_id).info.status == "RUNNING"


def test_a_second_resume_of_the_same_run_is_refused_before_any_work(store: Path) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        tracking.run("rlgen", "stopped", tags={"rlgen.family": "gan", "rlgen.role": "train"}) as run_id,
    ):
        save_checkpoint(run_checkpoint_path(run_id), {"step": 3})
        raise KeyboardInterrupt  # stopped with Ctrl-C: KILLED, resumable
    holder = subprocess.Popen(  # what the first `rlgen run gan --resume` does first: take the run's lock
        [sys.executable, "-c", f"from rlgen.checkpoints import lock; lock.acquire({run_id!r}); print(1, flush=True); "
         "import time; time.sleep(120)"],
        env={**os.environ, "RLGEN_HOME": str(store.parent)},
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "1\n"
        refused = rlgen("run", "gan", "--resume", run_id, code=2)
        assert f"cannot resume run {run_id}: process " in refused and "is training, resuming or syncing it" in refused
        assert f":{holder.pid} " in refused  # names the process that has it
        assert tracking.get_run(run_id).info.status == "KILLED"  # nothing was reopened
    finally:
        holder.kill()
        holder.wait()
