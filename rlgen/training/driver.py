"""The one training-loop driver. Every trainer (models.training.Trainer) runs under it, so checkpoints, resume,
stop requests, NaN checks and metrics are written once, here.

After every step the driver checks the step's statistics, logs their means every `log_every` steps, records
the trainer's reports (metrics, sample grids, texts), and writes the run's resumable checkpoint every
`checkpoint_every` steps and when a stop is requested (then it raises TrainingInterrupted). A checkpoint
holds the trainer's state, the RNGs, the curves so far and the driver's own running means: what a
bit-for-bit continuation needs. A run that has one (a Prefect retry, `--resume`) goes on from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
from torch import Tensor

from models.common import (
    NonFiniteLoss,
    TrainingDiverged,
    autocast,
    check_finite,
    rng_state,
    set_rng_state,
)
from models.training import Report, Trainer
from rlgen.checkpoints import lock as run_lock
from rlgen.checkpoints.io import load_checkpoint, run_checkpoint_path, save_checkpoint
from rlgen.checkpoints.stop import StopRequest
from rlgen.errors import CheckpointMismatch, CheckpointWriteError, TrainingInterrupted
from rlgen.tracking import heartbeat
from rlgen.tracking.artifacts import log_image, log_text
from rlgen.tracking.metrics import MetricLogger
from rlgen.tracking.runs import set_tags
from rlgen.training.progress import MetricRecorder, fan_out, progress_bar

log = logging.getLogger(__name__)
MetricsCallback = Callable[[int, dict[str, float]], None]


class NonFiniteParameters(NonFiniteLoss):
    """A model's parameters hold NaN or infinity; no checkpoint is written from them."""


class Drive(NamedTuple):
    history: dict[str, list[tuple[int, float]]]  # every logged metric, (step, value), resumed parts included
    seconds: float  # this session's wall time in the loop
    first_step: int  # where this session started: 0, or the checkpoint's step when resumed


class _Means:
    """Running sums of step statistics on the device (`.item()` only when logging), and what was logged last."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor | float] = {}
        self.counts: dict[str, int] = {}
        self.logged = 0

    def add(self, stats: Mapping[str, Tensor | float]) -> None:
        for key, value in stats.items():
            value = value.detach() if isinstance(value, Tensor) else value
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def take(self, step: int) -> dict[str, float]:
        means = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts, self.logged = {}, {}, step
        return means

    def state(self) -> dict[str, Any]:
        return {
            "sums": {k: v.cpu() if isinstance(v, Tensor) else v for k, v in self.sums.items()},
            "counts": dict(self.counts),
            "logged": self.logged,
        }

    def load(self, state: dict[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in state["sums"].items()}
        self.counts, self.logged = dict(state["counts"]), state["logged"]


class _Checkpoint:
    """The resumable checkpoint of one run's training (none when `every` is None: nothing is written)."""

    def __init__(self, run_id: str, trainer: Trainer, every: int | None, device: torch.device) -> None:
        self.run_id, self.trainer, self.every, self.device = run_id, trainer, every, device
        self.path = run_checkpoint_path(run_id)
        self.last_step: int | None = None
        self.checked = 0  # the position at the previous check

    def restore(self, recorder: MetricRecorder, means: _Means) -> dict[str, Any] | None:
        """Load the checkpoint into the trainer, the RNGs, the curves and the running means; its payload, or None."""
        if self.every is None or not self.path.is_file():
            return None
        payload = load_checkpoint(self.path, self.device)
        try:
            self.trainer.load_state_dict(payload["trainer"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            reason = " ".join(line.strip() for line in str(err).strip().splitlines()[:2]) or err.__class__.__name__
            raise CheckpointMismatch(
                f"cannot resume run {self.run_id} from its checkpoint at {self.path} (step {payload.get('step')}): "
                f"its state does not match the model this code builds ({err.__class__.__name__}: {reason[:300]}); "
                "the code, or a default it relies on, changed since the checkpoint was written. Fix: finish the run "
                "with the rlgen version that wrote it, or start a new run (deleting the checkpoint starts this run's "
                "training over)."
            ) from None
        set_rng_state(payload["rng"])
        recorder.history.clear()
        recorder.history.update({k: list(v) for k, v in payload["curves"].items()})
        means.load(payload["driver"], self.device)
        self.last_step = self.checked = payload["step"]
        return payload

    def save(self, recorder: MetricRecorder, means: _Means, flush: Callable[[], None]) -> None:
        """Write the checkpoint of the current position (never from non-finite weights), after flushing the metrics."""
        step = self.trainer.steps
        for key, module in self.trainer.modules().items():
            if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
                raise NonFiniteParameters(
                    f"{self.trainer.name}: the parameters of {key!r} are not finite at step {step}"
                )
        payload = {
            "run_id": self.run_id,
            "step": step,
            "trainer": self.trainer.state_dict(),
            "rng": rng_state(),
            "curves": dict(recorder.history),
            "driver": means.state(),
        }
        try:
            flush()  # the metric journal lives beside the checkpoint: a full disk stops it first
            save_checkpoint(self.path, payload)
        except OSError as err:
            kept = f"step {self.last_step}, still valid, at {self.path}" if self.last_step is not None else "none yet"
            reason = str(err.strerror or err)
            reason = reason[:1].lower() + reason[1:]
            raise CheckpointWriteError(
                f"{self.trainer.name}: the checkpoint of step {step} could not be written to {self.path.parent} "
                f"({reason}); the previous checkpoint ({kept}) is untouched and the run can go on from "
                f"it. Fix: free space there (or set RLGEN_CHECKPOINT_DIR to a roomier disk), then "
                f"`rlgen run FAMILY --resume {self.run_id}`."
            ) from err
        self.last_step = step
        heartbeat.note_checkpoint(self.run_id, step)

    def due(self) -> bool:
        """Whether the position crossed a multiple of `every` since the last check."""
        step, previous, self.checked = self.trainer.steps, self.checked, self.trainer.steps
        if not self.every:
            return False
        return step // self.every > previous // self.every

    def describe(self) -> str:
        """Where the last good checkpoint is, for error messages."""
        if self.last_step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint is step {self.last_step} at {self.path}"


def drive(
    trainer: Trainer,
    run_id: str,
    *,
    checkpoint_every: int | None,
    stop: StopRequest,
    nan_rollback: bool = False,
    device: torch.device | None = None,
    amp: bool = False,
) -> Drive:
    """Run `trainer` to the end of its budget (or its early stop) and record it on MLflow run `run_id`.

    `checkpoint_every` None writes no checkpoint at all (the LeNet evaluator); 0 writes one only when stopped
    and at the end. A non-finite loss or parameter raises NonFiniteLoss naming the model, the step and the last
    good checkpoint; with `nan_rollback`, training first goes back once to that checkpoint at half the
    learning rate. The metric logger is closed on the way out, whatever happens; MetricsUndelivered when the
    tracking server is still away at the end (the metrics are in the run's journal). The run's lock is held
    throughout (RunBusy if another process holds it).
    """
    device = device or torch.device("cpu")
    with run_lock.holding(run_id) if checkpoint_every is not None else nullcontext():
        return _drive(trainer, run_id, checkpoint_every, stop, nan_rollback, device, amp)


def _drive(
    trainer: Trainer,
    run_id: str,
    checkpoint_every: int | None,
    stop: StopRequest,
    nan_rollback: bool,
    device: torch.device,
    amp: bool,
) -> Drive:
    recorder, means = MetricRecorder(), _Means()
    checkpoint = _Checkpoint(run_id, trainer, checkpoint_every, device)
    resumed = checkpoint.restore(recorder, means)
    if resumed is not None:
        log.info("%s: resuming run %s from its checkpoint at step %d", trainer.name, run_id, resumed["step"])
    logger = MetricLogger(run_id, resume=resumed is not None)
    first_step, started, rolled_back = trainer.steps, time.perf_counter(), False
    try:
        with stop.training(), autocast(device, amp), progress_bar(trainer.budget, trainer.name, trainer.shown) as bar:
            on_metrics = fan_out(recorder, logger, bar)
            while True:
                try:
                    _loop(trainer, run_id, checkpoint, recorder, means, logger, on_metrics, stop)
                    break
                except NonFiniteLoss as err:
                    if not nan_rollback or rolled_back or checkpoint.last_step is None:
                        name = "" if isinstance(err, NonFiniteParameters) else f"{trainer.name}: "  # that one names it
                        raise NonFiniteLoss(
                            f"{name}{err}; training stopped and the run is marked FAILED ({checkpoint.describe()}); "
                            f"{trainer.advice}, or set nan_rollback=true"
                        ) from None
                    _rollback(trainer, run_id, checkpoint, recorder, means, logger, str(err))
                    rolled_back = True
    except BaseException:
        logger.close(strict=False)  # the error on its way out says more than undelivered metrics would
        raise
    logger.close()  # MetricsUndelivered when the tracking server is still away: the run cannot finish
    seconds = time.perf_counter() - started
    trainer.finish()
    return Drive(dict(recorder.history), seconds, first_step)


def _loop(
    trainer: Trainer,
    run_id: str,
    checkpoint: _Checkpoint,
    recorder: MetricRecorder,
    means: _Means,
    logger: MetricLogger,
    on_metrics: MetricsCallback,
    stop: StopRequest,
) -> None:
    while not trainer.done():
        try:
            stats = trainer.step()
        except NonFiniteLoss:
            raise
        except TrainingDiverged as err:  # a Langevin chain, say: name the training step it happened at
            raise type(err)(f"{trainer.name}, training step {trainer.steps + 1}: {err}") from None
        check_finite(stats, trainer.steps)
        means.add(stats)
        if means.sums and (trainer.steps // trainer.log_every > means.logged // trainer.log_every or trainer.done()):
            on_metrics(trainer.steps, means.take(trainer.steps))
        for report in trainer.reports():
            _record(run_id, trainer.steps, report, on_metrics)
        stopping = stop.is_set()
        if checkpoint.due() or (stopping and checkpoint.every is not None):
            checkpoint.save(recorder, means, logger.flush)
        if stopping:
            where = f"checkpoint written to {checkpoint.path}" if checkpoint.every is not None else "no checkpoint"
            raise TrainingInterrupted(
                f"{trainer.name} stopped at step {trainer.steps} on request; {where}; "
                f"continue with `rlgen run ... --resume {run_id}`"
            )
    if checkpoint.every is not None and checkpoint.last_step != trainer.steps:
        checkpoint.save(recorder, means, logger.flush)  # a crash after training resumes with nothing left to train


def _record(run_id: str, step: int, report: Report, on_metrics: MetricsCallback) -> None:
    if report.metrics:
        on_metrics(step, report.metrics)
    for artifact, grid in report.grids.items():
        log_image(run_id, grid.images, artifact, grid.nrow)
    for artifact, text in report.texts.items():
        log_text(run_id, text, artifact)


def _rollback(
    trainer: Trainer,
    run_id: str,
    checkpoint: _Checkpoint,
    recorder: MetricRecorder,
    means: _Means,
    logger: MetricLogger,
    reason: str,
) -> None:
    """Go back to the last checkpoint with half the learning rate.

    The metric steps already stored past the checkpoint stay in the history, and the replayed ones are stored only
    beyond them; the run is tagged `rlgen.rollback` with what happened.
    """
    payload = checkpoint.restore(recorder, means)
    assert payload is not None  # the caller checked that a checkpoint was written
    rates = []
    for optimizer in trainer.optimizers().values():
        for group in optimizer.param_groups:
            group["lr"] *= 0.5
            rates.append(group["lr"])
    logger.resync()
    note = (
        f"{reason}; rolled back to step {payload['step']} with learning rate(s) {', '.join(f'{r:.3g}' for r in rates)}"
    )
    set_tags(run_id, {"rlgen.rollback": note})
    log.warning("%s: %s", trainer.name, note)
