"""The metric journal: a run's metrics on local disk, beside its checkpoint, until the tracking store has them.

`checkpoints/<run id>/metrics.jsonl` holds one JSON row per metric value, in the order they were logged;
`metrics.sent` holds how many bytes of it the store already has. Delivery sends the rest in order and moves
the mark. After a failed or interrupted delivery (a crash, the server going away mid-batch) it is not known
whether the last batch arrived, so rows at or below each key's last stored step are dropped before sending
again: nothing is stored twice and nothing is skipped. The journal is bounded: at most
`RLGEN_METRIC_JOURNAL_ROWS` undelivered rows (default 1,000,000, about 80 MB).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from mlflow.entities import Metric

from rlgen.checkpoints import lock as run_lock
from rlgen.checkpoints.io import run_checkpoint_path
from rlgen.tracking.crashes import close_crashed
from rlgen.tracking.runs import PARENT_TAG, child_runs, get_run, last_metric_steps
from rlgen.tracking.store import client

ROWS_ENV = "RLGEN_METRIC_JOURNAL_ROWS"


def journal_path(run_id: str) -> Path:
    """Where run `run_id` journals its metrics."""
    return run_checkpoint_path(run_id, "metrics.jsonl")


def max_rows() -> int:
    """How many undelivered rows a journal may hold: $RLGEN_METRIC_JOURNAL_ROWS, default 1,000,000."""
    raw = os.environ.get(ROWS_ENV, "")
    if raw and not (raw.isdigit() and int(raw) > 0):
        raise ValueError(f"{ROWS_ENV}={raw!r} is not a positive number of rows; unset it or set e.g. 1000000")
    return int(raw) if raw else 1_000_000


class MetricJournal:
    """The journal of one run. Appending is thread-safe; one delivery at a time (the metric logger's send lock)."""

    def __init__(self, run_id: str) -> None:
        self.run_id, self.path = run_id, journal_path(run_id)
        self.lock = threading.Lock()  # file changes: appends, and the mark with the truncation
        self.mark = self.path.with_name("metrics.sent")
        self.uncertain = True  # whether the store may already hold rows after the mark (a previous process's)

    def append(self, rows: list[Metric]) -> None:
        """Add rows at the end, on disk (flushed and fsynced) when this returns."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}) + "\n" for m in rows
        )
        with self.lock, self.path.open("a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def sent(self) -> int:
        """How many bytes of the journal the store has."""
        try:
            return int(self.mark.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def unsent(self) -> tuple[list[Metric], int]:
        """The rows the store does not have yet, in order, and the journal's size in bytes after them."""
        with self.lock:
            if not self.path.is_file():
                return [], 0
            start = self.sent()
            with self.path.open("rb") as f:
                f.seek(start)
                data = f.read()
        end = data.rfind(b"\n") + 1  # a crash mid-write leaves half a line: it was never acknowledged
        rows = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        metrics = [Metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"])) for r in rows]
        return metrics, start + end

    def last_steps(self) -> dict[str, int]:
        """The highest step of each key among the undelivered rows."""
        steps: dict[str, int] = {}
        for m in self.unsent()[0]:
            steps[m.key] = max(m.step, steps.get(m.key, m.step))
        return steps

    def deliver(self) -> int:
        """Send the undelivered rows to the store in order (at most 1000 per batch), moving the mark after each
        batch; how many were sent. Raises what the store raised; the rows stay in the journal then."""
        rows, end = self.unsent()
        if not rows:
            return 0
        if self.uncertain:
            stored = last_metric_steps(self.run_id)
            rows = [m for m in rows if m.step > stored.get(m.key, -1)]
        mlflow, done = client(), 0
        self.uncertain = True
        for start in range(0, len(rows), 1000):  # MLflow takes at most 1000 metrics per batch
            mlflow.log_batch(self.run_id, metrics=rows[start : start + 1000])
            done += len(rows[start : start + 1000])
        self._set_mark(end)
        self.uncertain = False
        return done

    def remove(self) -> None:
        """Delete the journal (every row is in the store)."""
        with self.lock:
            self._remove()

    def _remove(self) -> None:
        self.mark.unlink(missing_ok=True)  # first: a mark without its journal would skip the next one's rows
        self.path.unlink(missing_ok=True)

    def _set_mark(self, end: int) -> None:
        with self.lock:
            if end == self.path.stat().st_size:  # all delivered: start over, so the file stays small
                self._remove()
                return
            tmp = self.mark.with_name(".metrics.sent.tmp")
            tmp.write_text(str(end))
            os.replace(tmp, self.mark)


def sync(run_id: str) -> list[tuple[str, int]]:
    """Deliver what the journals of run `run_id` (a training run, or a flow's run: its training runs) hold, and
    close the runs that crashed meanwhile; (training run id, rows delivered) for each."""
    found = get_run(run_id)
    trains = [found]
    if found.data.tags.get("rlgen.role") == "flow":
        trains = [r for r in child_runs(run_id) if r.data.tags.get("rlgen.role") == "train"]
    done = []
    for train in trains:
        train_id, delivered = train.info.run_id, 0
        journal = MetricJournal(train_id)
        if journal.path.is_file():
            with run_lock.holding(train_id, "sync"):  # not while its own process still delivers it
                delivered = journal.deliver()
        parent = train.data.tags.get(PARENT_TAG)
        close_crashed(run_ids=[train_id, *([parent] if parent else [])])
        done.append((train_id, delivered))
    return done
