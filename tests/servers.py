"""Helpers for tests that start servers: a free port on 127.0.0.1, waiting until one answers, what its processes
show on their command lines and which addresses they listen on, stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait until GET `url` answers 200; fail with the end of the server's `log` if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, f"{url}: the server exited {process.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{url}: not healthy within {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (a server and the workers it started)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def command_lines(pid: int) -> list[str]:
    """The command line of a process and of each descendant, as /proc/<pid>/cmdline holds it (what `ps` shows)."""
    lines = []
    for process in process_tree(pid):
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


def listening(pid: int, port: int) -> set[str]:
    """The addresses that a process or its descendants listen on at `port` (from the kernel's socket table)."""
    pids = {p.pid for p in process_tree(pid)}
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids and c.laddr.port == port
    }


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM a server started in a session of its own, and its workers; SIGKILL what is left after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
