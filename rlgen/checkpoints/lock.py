"""The run lock: one process at a time trains (or resumes, or syncs) a run, through `checkpoints/<run id>/.lock`.

An exclusive `flock` on the lock file, which the kernel releases when its process ends, kill -9 included, so a
crashed run is never left locked. The lock is re-entrant within a process: `--resume` takes it before any work
and the training driver takes it again inside the flow.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from rlgen.checkpoints.io import run_checkpoint_path
from rlgen.errors import ConfigError


class RunBusy(ConfigError):
    """Another process holds the run's lock: it is training, resuming or syncing that run right now."""


_held: dict[str, tuple[IO[str], int]] = {}  # run id -> (open lock file, how many holders in this process)
_guard = threading.Lock()


def acquire(run_id: str, doing: str = "resume") -> None:
    """Take run `run_id`'s lock; RunBusy (naming the process that holds it) if another process has it."""
    with _guard:
        if run_id in _held:
            handle, count = _held[run_id]
            _held[run_id] = (handle, count + 1)
            return
        path = run_checkpoint_path(run_id, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunBusy(
                f"cannot {doing} run {run_id}: {holder} is training, resuming or syncing it right now (it holds the "
                f"lock {path}). Wait until that command ends, or stop it (Ctrl-C, or `kill` its pid) and run this "
                "command again."
            ) from None
        handle.truncate(0)
        handle.write(f"process {os.uname().nodename}:{os.getpid()}\n")
        handle.flush()
        _held[run_id] = (handle, 1)


def release(run_id: str) -> None:
    """Give back one hold of run `run_id`'s lock; the last one unlocks it."""
    with _guard:
        handle, count = _held.pop(run_id)
        if count > 1:
            _held[run_id] = (handle, count - 1)
        else:
            handle.close()  # closing the file releases the flock


@contextmanager
def holding(run_id: str, doing: str = "train") -> Iterator[None]:
    """Hold run `run_id`'s lock while the block runs."""
    acquire(run_id, doing)
    try:
        yield
    finally:
        release(run_id)
