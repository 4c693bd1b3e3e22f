"""The metric logger: an `on_metrics(step, metrics)` callback that never makes training wait for MLflow.

Rows go from memory to the run's journal on local disk (rlgen.tracking.journal), and from there to the
store. While the tracking server does not answer, they stay in the journal and training goes on; they are
delivered in order, each once, when it answers again, when the run is resumed, or by `rlgen sync RUN_ID`.
"""

from __future__ import annotations

import logging
import threading
import time

from mlflow.entities import Metric

from rlgen.tracking.journal import ROWS_ENV, MetricJournal, max_rows
from rlgen.tracking.runs import last_metric_steps
from rlgen.tracking.secrets import mask_secrets
from rlgen.tracking.store import tracking_uri, unreachable

log = logging.getLogger(__name__)


class MetricsUndelivered(RuntimeError):
    """Metrics of a run are in its journal only: the tracking store did not take them."""


class MetricLogger:
    """Calls only queue rows; a background thread journals and sends them every `flush_every` seconds.

    `flush()` puts what is queued in the journal (on disk) and sends it if the store answers (checkpoints call it
    first, so that every metric up to a checkpoint's step is in the store or the journal); `close()` stops the
    thread and delivers the rest, or raises MetricsUndelivered naming the server and the journal. A resumed run
    passes `resume=True`: steps at or below each key's last stored (or journaled) step are dropped, so replaying
    the steps after the checkpoint adds no duplicates and leaves no gap.
    """

    def __init__(self, run_id: str, flush_every: float = 2.0, resume: bool = False) -> None:
        self.run_id, self.flush_every, self.limit = run_id, flush_every, max_rows()
        self.journal = MetricJournal(run_id)
        self._pending: list[Metric] = []
        self._queue_lock, self._send_lock, self._spill_lock = threading.Lock(), threading.Lock(), threading.Lock()
        self._stop = threading.Event()
        self.away: str | None = None  # why the last delivery did not happen, while the store is away
        self._deliver()  # what an earlier process of this run left undelivered comes first
        self._backlog = len(self.journal.unsent()[0])
        self.skip_through = self._known_steps() if resume else {}
        self._thread = threading.Thread(
            target=self._send_periodically, name=f"mlflow-metrics-{run_id[:8]}", daemon=True
        )
        self._thread.start()

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step) for k, v in metrics.items() if step > self.skip_through.get(k, -1)]
        with self._queue_lock:
            self._pending.extend(rows)
            waiting = len(self._pending) + self._backlog
        if waiting > self.limit:
            raise MetricsUndelivered(
                f"the metric journal {self.journal.path} of run {self.run_id} holds {waiting} rows that the MLflow "
                f"tracking store at {mask_secrets(tracking_uri())} has not taken ({self.away or 'it is too slow'}), "
                f"more than its limit {ROWS_ENV}={self.limit}; training stopped at step {step}. When the store "
                f"answers again, `rlgen run FAMILY --resume {self.run_id}` delivers the journal and goes on from the "
                f"last checkpoint; or raise {ROWS_ENV}."
            )

    def resync(self) -> None:
        """After a rollback: store only the steps beyond what the store (or the journal) already has."""
        self.flush()
        self.skip_through = self._known_steps()

    def flush(self) -> None:
        """Journal what is queued (on disk when this returns), then send it unless a delivery is under way."""
        self._spill()
        self._deliver(wait=False)

    def close(self, strict: bool = True) -> None:
        """Stop the background thread and deliver the rest; MetricsUndelivered (if `strict`, else a warning) when
        the store does not take it."""
        self._stop.set()
        self._thread.join(timeout=5 * self.flush_every + 10)  # it may be stuck in MLflow's retries: do not wait
        try:
            self._spill()
        except OSError as err:  # a full disk: the rows still queued are lost with this process
            if strict:
                raise
            log.warning("the metric journal %s could not be written (%s)", self.journal.path, err)
        self._deliver(wait=True)
        left = len(self.journal.unsent()[0])
        if not left:
            return
        message = (
            f"{left} metric rows of run {self.run_id} did not reach the MLflow tracking store at "
            f"{mask_secrets(tracking_uri())} ({self.away or 'a delivery was still under way'}); they are kept, in "
            f"order, in the journal {self.journal.path}. The run stays open until they are delivered: when the "
            f"store answers again, run `rlgen sync {self.run_id}` to deliver them, or `rlgen run FAMILY --resume "
            f"{self.run_id}`, which delivers them first and then goes on from the last checkpoint."
        )
        if strict:
            raise MetricsUndelivered(message)
        log.warning("%s", message)

    def _spill(self) -> None:
        """Move the queued rows to the journal, in order; on a failed write they stay queued."""
        with self._spill_lock:
            with self._queue_lock:
                rows, self._pending = self._pending, []
            try:
                self.journal.append(rows)
            except OSError:
                with self._queue_lock:
                    self._pending[:0] = rows
                raise
            with self._queue_lock:
                self._backlog += len(rows)

    def _deliver(self, wait: bool = True) -> None:
        """Send the journal if the store answers; remember why not otherwise. Never raises."""
        if not self._send_lock.acquire(timeout=30 if wait else 0):
            return
        try:
            self.away = unreachable()
            if self.away is None:
                self.journal.deliver()
                self._backlog = len(self.journal.unsent()[0])
        except Exception as err:  # the store went away mid-delivery, or refused: the rows stay in the journal
            self.away = f"{err.__class__.__name__}: {err}"
            log.debug("delivering metrics of run %s failed: %s", self.run_id, self.away)
        finally:
            self._send_lock.release()

    def _known_steps(self) -> dict[str, int]:
        """The highest step of each key in the store or the journal."""
        with self._send_lock:
            steps = self.journal.last_steps()
            try:
                stored = last_metric_steps(self.run_id) if unreachable() is None else None
            except Exception:
                stored = None
            if stored is None:  # the store is away: the first delivery checks against it
                self.journal.uncertain, stored = True, {}
        return {k: max(stored.get(k, -1), steps.get(k, -1)) for k in stored.keys() | steps.keys()}

    def _send_periodically(self) -> None:
        while not self._stop.wait(self.flush_every):
            try:
                self._spill()
            except OSError as err:  # the disk is full, say: keep the rows in memory and try again
                log.warning("journaling metrics of run %s failed: %s", self.run_id, err)
                continue
            self._deliver()
