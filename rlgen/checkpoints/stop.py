"""Stop requests: one object per invocation (a run, or a pipeline and its branches), never a process global.

`rlgen run` (and a flow started any other way) opens a `stop_scope`: the code inside, Prefect tasks in
worker threads included (they copy the context), sees one `StopRequest`. SIGINT and SIGTERM set it while
its `on_signals()` is active; the training-loop driver checks it after every step, writes a checkpoint and
stops; the pipeline starts no new branch. A later invocation in the same process (`rlgen serve`, a
long-lived worker) opens a scope of its own and starts clean.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
Handler = Callable[[int, FrameType | None], Any] | int | None


class StopRequest:
    """Whether training should checkpoint and stop at its next step boundary, and the signals that asked."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._loops = 0  # training loops running under this request
        self.signals: list[int] = []  # SIGINT / SIGTERM received, in order

    def is_set(self) -> bool:
        """Whether a stop was asked for: loops stop, nothing new starts."""
        return self._event.is_set()

    def set(self) -> bool:
        """Ask the running loops to stop; False when none is running or a stop was already asked (interrupt at once)."""
        with self._lock:
            if self._loops == 0 or self._event.is_set():
                self._event.set()
                return False
            self._event.set()
            return True

    @contextmanager
    def training(self) -> Iterator[None]:
        """Mark a training loop as running. A stop asked by code (not by a signal) ends with the last loop."""
        with self._lock:
            self._loops += 1
        try:
            yield
        finally:
            with self._lock:
                self._loops -= 1
                if self._loops == 0 and not self.signals:
                    self._event.clear()

    def handler(self, fallback: Handler) -> Callable[[int, FrameType | None], None]:
        """A SIGINT/SIGTERM handler: the first signal stops running loops at their next step boundary; with no
        loop running, or on a second signal, `fallback` handles it (a KeyboardInterrupt if it is not a function)."""

        def handle(signum: int, frame: FrameType | None) -> None:
            first = not self.signals
            self.signals.append(signum)
            if self.set() and first:
                log.warning(
                    "signal %d: stopping at the next training step, after a checkpoint (again to stop at once)", signum
                )
                return
            if callable(fallback):
                fallback(signum, frame)
            raise KeyboardInterrupt(f"signal {signum}")

        return handle

    @contextmanager
    def on_signals(self) -> Iterator[StopRequest]:
        """While active, SIGINT and SIGTERM set this request, in front of the handlers already installed (Prefect's
        flow engine installs a SIGTERM handler that would stop a flow at an arbitrary point). Signal handlers live
        in the main thread: elsewhere (a subflow in a pipeline branch) this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum, handler in previous.items():
            signal.signal(signum, self.handler(handler))
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


_current: ContextVar[StopRequest | None] = ContextVar("rlgen_stop_request", default=None)


def current_stop() -> StopRequest:
    """The stop request of the enclosing `stop_scope`, or a fresh one that nothing will set."""
    return _current.get() or StopRequest()


@contextmanager
def stop_scope(request: StopRequest | None = None) -> Iterator[StopRequest]:
    """Make `request` (default: the enclosing scope's, else a new one) the stop request of the code inside."""
    scoped = request or _current.get() or StopRequest()
    token = _current.set(scoped)
    try:
        yield scoped
    finally:
        _current.reset(token)
