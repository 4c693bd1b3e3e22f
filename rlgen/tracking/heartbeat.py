"""Heartbeats: every open run's tag `rlgen.heartbeat` is refreshed by one background thread per process.

The tag holds when the run last beat, which process (`host:pid`) runs it and the step of its last checkpoint,
so any rlgen process that can read the store can tell a live run from a crashed one (`crash_reason`). The
thread skips a beat while the tracking server does not answer and beats again once it does; a run that
another host marked crashed meanwhile is set back to RUNNING then. Two environment variables tune it:
`RLGEN_HEARTBEAT_INTERVAL` (seconds between beats, default 10) and `RLGEN_HEARTBEAT_TIMEOUT` (seconds
without a beat after which a run counts as crashed, default 60).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import NamedTuple

from mlflow.entities import Run, RunStatus, RunTag

from rlgen.tracking.store import answers, client

log = logging.getLogger(__name__)
HEARTBEAT_TAG = "rlgen.heartbeat"
CRASHED_TAG = "rlgen.crashed"
INTERVAL_ENV, TIMEOUT_ENV = "RLGEN_HEARTBEAT_INTERVAL", "RLGEN_HEARTBEAT_TIMEOUT"


class Beat(NamedTuple):
    time: float  # seconds since the epoch
    worker: str  # host:pid of the process that runs the run
    checkpoint_step: int | None  # the step of the run's last checkpoint, if one was written


def _seconds(name: str, default: float) -> float:
    """A positive number of seconds from environment variable `name`; ValueError naming it otherwise."""
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds; unset it or set e.g. {default:g}") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be a positive number of seconds; unset it or set e.g. {default:g}")
    return value


def interval_s() -> float:
    """Seconds between two beats: $RLGEN_HEARTBEAT_INTERVAL, default 10."""
    return _seconds(INTERVAL_ENV, 10.0)


def timeout_s() -> float:
    """Seconds without a beat after which a RUNNING run counts as crashed: $RLGEN_HEARTBEAT_TIMEOUT, default 60."""
    return _seconds(TIMEOUT_ENV, 60.0)


def this_worker() -> str:
    """`host:pid` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def encode(beat: Beat) -> str:
    """The tag value of a beat."""
    return json.dumps({"time": round(beat.time, 1), "worker": beat.worker, "checkpoint_step": beat.checkpoint_step})


def decode(value: str | None) -> Beat | None:
    """The beat in a tag value; None if there is none or it cannot be read."""
    try:
        data = json.loads(value or "")
        return Beat(float(data["time"]), str(data["worker"]), data.get("checkpoint_step"))
    except (ValueError, TypeError, KeyError):
        return None


def process_alive(worker: str) -> bool | None:
    """Whether the process `host:pid` still runs; None when it ran on another host (this one cannot tell)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is gone too
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def crash_reason(run: Run, now: float | None = None) -> str | None:
    """Why a RUNNING run with a heartbeat has crashed (its process is gone, or it stopped beating); None if alive."""
    beat = decode(run.data.tags.get(HEARTBEAT_TAG))
    if run.info.status != "RUNNING" or beat is None:
        return None
    age, limit = (now or time.time()) - beat.time, timeout_s()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(beat.time))
    alive = process_alive(beat.worker)
    if alive is False:
        return f"its process {beat.worker} is gone (last heartbeat {stamp}, {age:.0f} s ago)"
    if age > limit:
        return f"its heartbeat stopped at {stamp} ({age:.0f} s ago; {TIMEOUT_ENV}={limit:g} s; process {beat.worker})"
    return None


class _Beater:
    """The process's heartbeat thread over the runs it has open."""

    def __init__(self) -> None:
        self.steps: dict[str, int | None] = {}  # open run id -> its last checkpoint step
        self.lock, self.wake = threading.Lock(), threading.Event()
        self.thread: threading.Thread | None = None
        self.missed = False  # a beat was skipped (the server did not answer)

    def start(self, run_id: str) -> None:
        with self.lock:
            self.steps[run_id] = None
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="rlgen-heartbeat", daemon=True)
                self.thread.start()
        self.wake.set()  # beat now, then every interval_s() (read again each time)

    def run(self) -> None:
        while True:
            self.wake.wait(interval_s())
            self.wake.clear()
            try:
                self.beat()
            except Exception as err:  # a beat lost is not worth stopping training for; the next one may pass
                log.debug("heartbeat failed: %s", err)
                self.missed = True

    def beat(self) -> None:
        with self.lock:
            steps = dict(self.steps)
        if not steps:
            return
        if not answers():
            self.missed = True
            return
        mlflow, worker = client(), this_worker()
        for run_id, step in steps.items():
            if self.missed:  # another host may have taken our silence for a crash: we are alive
                found = mlflow.get_run(run_id)
                if found.info.status == "FAILED" and CRASHED_TAG in found.data.tags:
                    mlflow.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
                    mlflow.delete_tag(run_id, CRASHED_TAG)
            mlflow.log_batch(run_id, tags=[RunTag(HEARTBEAT_TAG, encode(Beat(time.time(), worker, step)))])
        self.missed = False


_beater = _Beater()


def fresh() -> str:
    """The tag value of a beat from this process now, to set when a run opens."""
    return encode(Beat(time.time(), this_worker(), None))


def start(run_id: str) -> None:
    """Beat for `run_id` until `stop`."""
    _beater.start(run_id)


def stop(run_id: str) -> None:
    """Stop beating for `run_id` (it was closed)."""
    with _beater.lock:
        _beater.steps.pop(run_id, None)


def note_checkpoint(run_id: str, step: int) -> None:
    """Record that `run_id` wrote a checkpoint at `step`; the heartbeat carries it at once."""
    with _beater.lock:
        if run_id in _beater.steps:
            _beater.steps[run_id] = step
    _beater.wake.set()
