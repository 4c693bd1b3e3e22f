"""Processes to kill, cheaply: a warm interpreter (torch, MLflow, Prefect and rlgen imported once) forks each one.

A fresh interpreter spends seconds of CPU importing torch, MLflow and Prefect before it trains a step; a chaos run
kills dozens. `Forker` starts one warm process (`python -m benchmarks.forker`) that forks a child per request, so
every child is a real process of its own (its own pid, its own MLflow and Prefect clients, killed with SIGKILL), and
only the imports are shared. The warm process opens no client and starts no thread before it forks.

The protocol, one JSON line each way: `{"call": "module:function", "args": [...], "log": path}` in; `{"pid": N}`
once forked, then `{"pid": N, "status": S}` (the exit status, -9 when killed) once it is gone.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any

WARM = ("torch", "mlflow", "prefect", "flows.models", "rlgen.cli", "rlgen.steps")  # imported before any fork


class Forker:
    """A warm process that forks children on request; use it as a context manager."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.status: int | None = None  # the last child's exit status, once read

    def __enter__(self) -> Forker:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.forker"],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)

    def start(self, call: str, args: list[Any], log: Path) -> int:
        """Fork a child that runs `call(*args)` with its output in `log`; its pid."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"call": call, "args": args, "log": str(log)}) + "\n")
        self.status = None
        return int(self._read()["pid"])

    def poll(self) -> int | None:
        """The last child's exit status if it is gone, else None; never blocks."""
        assert self.process is not None and self.process.stdout is not None
        if self.status is None and select.select([self.process.stdout], [], [], 0)[0]:
            self.status = int(self._read()["status"])
        return self.status

    def wait(self) -> int:
        """Block until the last child started is gone; its exit status (negative: the signal that ended it)."""
        if self.status is None:
            self.status = int(self._read()["status"])
        return self.status

    def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the forker (python -m benchmarks.forker) exited with status {self.process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply


def _child(request: dict[str, Any]) -> int:
    """In the forked child: output to the log file, then the call; the exit status."""
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        module, _, function = request["call"].partition(":")
        result = getattr(importlib.import_module(module), function)(*request["args"])
        return int(result or 0)
    except SystemExit as err:
        return err.code if isinstance(err.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Fork a child per request line, one at a time, and report its pid and then its exit status."""
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdout.flush()
            os._exit(_child(request))
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        replies.write(json.dumps({"pid": pid, "status": code}) + "\n")
        replies.flush()


if __name__ == "__main__":
    for name in WARM:
        importlib.import_module(name)
    serve(sys.stdin, sys.stdout)
