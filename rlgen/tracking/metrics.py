"""The metric logger: an `on_metrics(step, metrics)` callback that never makes training wait for MLflow."""

from __future__ import annotations

import threading
import time

from mlflow.entities import Metric

from rlgen.tracking.runs import last_metric_steps
from rlgen.tracking.store import client


class MetricLogger:
    """Calls only queue rows; a background thread sends them in batches every `flush_every` seconds.

    `flush()` sends what is queued and returns when it is stored (checkpoints call it first, so that
    every metric up to a checkpoint's step is in the store); `close()` flushes and stops the thread.
    A resumed run passes `resume=True`: steps at or below each key's last stored step are dropped,
    so replaying the steps after the checkpoint adds no duplicates and leaves no gap.
    """

    def __init__(self, run_id: str, flush_every: float = 2.0, resume: bool = False) -> None:
        self.run_id = run_id
        self.flush_every = flush_every
        self.skip_through = last_metric_steps(run_id) if resume else {}
        self._pending: list[Metric] = []
        self._queue_lock, self._send_lock = threading.Lock(), threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._client = client()
        self._thread = threading.Thread(
            target=self._send_periodically, name=f"mlflow-metrics-{run_id[:8]}", daemon=True
        )
        self._thread.start()

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        if self._error is not None:
            raise RuntimeError(f"sending metrics to MLflow failed: {self._error}") from self._error
        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step) for k, v in metrics.items() if step > self.skip_through.get(k, -1)]
        with self._queue_lock:
            self._pending.extend(rows)

    def resync(self) -> None:
        """After a rollback: store only the steps beyond what the store already has."""
        self.flush()
        self.skip_through = last_metric_steps(self.run_id)

    def flush(self) -> None:
        """Send what is queued (MLflow takes at most 1000 metrics per batch) and wait until it is stored."""
        with self._send_lock:
            with self._queue_lock:
                pending, self._pending = self._pending, []
            for start in range(0, len(pending), 1000):
                self._client.log_batch(self.run_id, metrics=pending[start : start + 1000])

    def close(self) -> None:
        """Stop the background thread and send the rest."""
        self._stop.set()
        self._thread.join()
        self.flush()

    def _send_periodically(self) -> None:
        while not self._stop.wait(self.flush_every):
            try:
                self.flush()
            except Exception as err:  # reported to the training thread at its next call
                self._error = err
                return
