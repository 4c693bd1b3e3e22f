"""Checkpoints: written atomically, read with weights_only=True, and resumable training on top of them.

A training loop calls `Checkpointer.after_step` after every step. It writes the run's checkpoint every
`checkpoint_every` steps and when the user asks to stop (Ctrl-C, SIGTERM: `request_stop`), in which case
it then raises `TrainingInterrupted`. A checkpoint holds what a bit-for-bit continuation needs: the
state of every model, optimizer and training buffer, the loop's position, the RNGs, and the curves so far.
It lives at `<rlgen home>/checkpoints/<run id>/<name>`, where a Prefect retry of the training task and
`rlgen run NAME --resume RUN_ID` find it.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from models.common import rng_state, set_rng_state
from rlgen.settings import checkpoints_dir
from models.common import NonFiniteLoss
from tasks import tracking
from tasks.progress import MetricRecorder

log = logging.getLogger(__name__)
R = TypeVar("R")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` through a temporary file and a rename, so no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; only tensors and plain data are accepted."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{path} is not a readable rlgen checkpoint ({err.__class__.__name__}: {err})") from None


# --------------------------------------------------------------------------- stop requests

_stop = threading.Event()  # running loops: checkpoint and stop at the next step (cleared when none is left)
_signalled = threading.Event()  # a signal asked this process to stop: nothing new starts (never cleared)
_loops_lock = threading.Lock()
_running_loops = 0


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped at a step boundary on the user's request, after writing its checkpoint.

    A KeyboardInterrupt, so that runs close as KILLED and the CLI exits with 128 + the signal."""


def request_stop() -> bool:
    """Ask every running training loop to checkpoint and stop at its next step boundary.

    False when no loop is running, or a stop was already asked for: the caller should interrupt at once."""
    with _loops_lock:
        if _running_loops == 0 or _stop.is_set():
            return False
        _stop.set()
        return True


@contextmanager
def _training_loop() -> Iterator[None]:
    global _running_loops
    with _loops_lock:
        _running_loops += 1
    try:
        yield
    finally:
        with _loops_lock:
            _running_loops -= 1
            if _running_loops == 0:
                _stop.clear()


_signals: list[int] = []


def received_signals() -> list[int]:
    """The signals (SIGINT, SIGTERM) this process received through `stop_handler`, in order."""
    return list(_signals)


def stop_handler(fallback: Callable[[int, Any], Any] | int | None) -> Callable[[int, Any], None]:
    """A SIGINT/SIGTERM handler: running training loops checkpoint and stop at their next step boundary, and
    none starts after; with no loop running, or on a second signal, `fallback` handles it (a KeyboardInterrupt
    if it is not a function)."""

    def handle(signum: int, frame: Any) -> None:
        _signals.append(signum)
        first = not _signalled.is_set()
        _signalled.set()
        if first and request_stop():
            log.warning("signal %d: stopping at the next training step, after a checkpoint (again to stop at once)", signum)
            return
        if callable(fallback):
            fallback(signum, frame)
        raise KeyboardInterrupt(f"signal {signum}")

    return handle


@contextmanager
def stop_at_step_boundaries() -> Iterator[None]:
    """While active, SIGINT and SIGTERM go through `stop_handler`, in front of the handlers already installed
    (Prefect's flow engine installs its own SIGTERM handler, which would stop the flow at an arbitrary point).
    Signal handlers live in the main thread: elsewhere (a subflow in a pipeline branch) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        signal.signal(signum, stop_handler(handler))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_requested() -> bool:
    """Whether this process was asked to stop (by a signal, or `request_stop`): loops stop, nothing new starts."""
    return _stop.is_set() or _signalled.is_set()


# --------------------------------------------------------------------------- resumable training


def run_checkpoint_path(run_id: str, name: str = "train.pt") -> Path:
    """Where the training of run `run_id` keeps its resumable checkpoint."""
    return checkpoints_dir() / run_id / name


class NonFiniteParameters(RuntimeError):
    """A model's parameters hold NaN or infinity; no checkpoint is written from them."""


class Checkpointer:
    """The resumable checkpoint of one training run.

    `objects` are what to save and restore by name: modules and optimizers (their state_dicts), tensors
    (copied in place) and anything else with state_dict/load_state_dict. `on_save` runs first at every
    save (for example, flushing queued metrics into the store).
    """

    def __init__(self, run_id: str, model_name: str, every: int, objects: dict[str, Any], on_save: Callable[[], None] | None = None) -> None:
        self.run_id, self.model_name, self.every = run_id, model_name, every
        self.objects, self.on_save = objects, on_save
        self.path = run_checkpoint_path(run_id)
        self.last_step: int | None = None
        self._checked = 0  # the step of the previous after_step call

    def restore(self) -> dict | None:
        """Load this run's checkpoint into the objects and the RNGs; its payload, or None if it has none."""
        if not self.path.is_file():
            return None
        payload = load_checkpoint(self.path)
        for key, obj in self.objects.items():
            _load_state(obj, payload["state"][key])
        set_rng_state(payload["rng"])
        self.last_step = self._checked = payload["step"]
        return payload

    def save(self, step: int, position: dict, extra: dict | None = None) -> Path:
        """Write the checkpoint of `step` (the loop's `position` says where to go on from)."""
        for key, obj in self.objects.items():
            if isinstance(obj, nn.Module) and not all(torch.isfinite(p).all() for p in obj.parameters()):
                raise NonFiniteParameters(f"{self.model_name}: the parameters of {key!r} are not finite at step {step}")
        if self.on_save is not None:
            self.on_save()
        save_checkpoint(self.path, {
            "run_id": self.run_id, "step": step, "position": position, "rng": rng_state(),
            "state": {key: _state(obj) for key, obj in self.objects.items()}, **(extra or {}),
        })
        self.last_step = step
        return self.path

    def after_step(self, step: int, position: Callable[[], dict], extra: Callable[[], dict] | None = None) -> None:
        """Checkpoint when due or when a stop was requested; then, on a stop request, raise TrainingInterrupted."""
        stopping = stop_requested()
        due = self.every and step // self.every > self._checked // self.every  # a multiple of `every` was reached
        self._checked = step
        if stopping or due:
            self.save(step, position(), extra() if extra else None)
        if stopping:
            raise TrainingInterrupted(
                f"{self.model_name} stopped at step {step} on request; checkpoint written to {self.path}; "
                f"continue with `rlgen run ... --resume {self.run_id}`"
            )

    def describe(self) -> str:
        """Where the last good checkpoint is, for error messages."""
        if self.last_step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint is step {self.last_step} at {self.path}"

    @contextmanager
    def running(self) -> Iterator[None]:
        """Mark a training loop as running, so that Ctrl-C and SIGTERM stop it at a step boundary."""
        with _training_loop():
            yield

    def rollback(self, logger: Any, recorder: Any, reason: str) -> dict:
        """Go back to the last checkpoint with half the learning rate; its payload (its `position` is where to go on).

        Optimizers are found among the objects and in the loop's position. The metric steps already stored
        past the checkpoint stay in the history, and the replayed ones are stored only beyond them; the run
        is tagged `rlgen.rollback` with what happened.
        """
        payload = self.restore()
        optimizers = [o.param_groups for o in self.objects.values() if isinstance(o, torch.optim.Optimizer)]
        optimizers += [v["param_groups"] for v in payload["position"].values() if isinstance(v, dict) and "param_groups" in v]
        rates = []
        for groups in optimizers:
            for group in groups:
                group["lr"] *= 0.5
                rates.append(group["lr"])
        logger.flush()
        logger.skip_through = tracking.last_metric_steps(self.run_id)
        recorder.history.clear()
        recorder.history.update(payload["curves"])
        note = f"{reason}; rolled back to step {payload['step']} with learning rate(s) {', '.join(f'{r:.3g}' for r in rates)}"
        tracking.set_tags(self.run_id, {"rlgen.rollback": note})
        log.warning("%s: %s", self.model_name, note)
        return payload


def _state(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu().clone()
    return obj.state_dict()


def _load_state(obj: Any, state: Any) -> None:
    if isinstance(obj, Tensor):
        obj.copy_(state)
    else:
        obj.load_state_dict(state)


class TrainingSession:
    """What every trainer wraps around its loop: the run's checkpoint, its metric logger and curves, the
    stop-request watch, and the NaN policy.

    Creating one restores the run's checkpoint when it has one (a Prefect retry, or --resume): the
    objects and the RNGs are back where they were, `start` is the position to give the training loop
    (None for a fresh run), and the curves so far are in `recorder`.
    """

    def __init__(self, cfg: Any, run_id: str, objects: dict[str, Any]) -> None:
        self.cfg = cfg
        self.recorder = MetricRecorder()
        self.checkpointer = Checkpointer(run_id, cfg.registered_name, cfg.checkpoint_every, objects)
        resumed = self.checkpointer.restore()
        if resumed is not None:
            self.recorder.history.update(resumed["curves"])
            log.info("%s: resuming run %s from its checkpoint at step %d", cfg.registered_name, run_id, resumed["step"])
        self.start: dict | None = resumed["position"] if resumed is not None else None
        self.start_step = resumed["step"] if resumed is not None else 0
        self.logger = tracking.MetricLogger(run_id, resume=resumed is not None)
        self.checkpointer.on_save = self.logger.flush

    def after_step(self, step: int, position: Callable[[], dict]) -> None:
        """The training loop's `after_step`: checkpoint when due, stop when asked."""
        self.checkpointer.after_step(step, position, self._extra)

    def run(self, fit: Callable[[dict | None], R], done: Callable[[R], tuple[int, dict]] | None, advice: str) -> R:
        """`fit(start)`, its result; then a checkpoint of the finished loop (`done(result)`: its step and position), so
        that a crash after training resumes with nothing left to train.

        A non-finite loss or parameter raises NonFiniteLoss naming the model, the step and the last good checkpoint,
        ending with `advice`; with `nan_rollback`, training first goes back once to that checkpoint at half the
        learning rate. The metric logger is closed on the way out, whatever happens.
        """
        start, rolled_back = self.start, False
        try:
            with self.checkpointer.running():
                while True:
                    try:
                        result = fit(start)
                        if done is not None:
                            step, position = done(result)
                            if self.checkpointer.last_step != step:
                                self.checkpointer.save(step, position, self._extra())
                        return result
                    except (NonFiniteLoss, NonFiniteParameters) as err:
                        if not self.cfg.nan_rollback or rolled_back or self.checkpointer.last_step is None:
                            name = "" if isinstance(err, NonFiniteParameters) else f"{self.cfg.registered_name}: "  # that one names it
                            raise NonFiniteLoss(
                                f"{name}{err}; training stopped and the run is marked FAILED ({self.checkpointer.describe()}); "
                                f"{advice}, or set nan_rollback=true"
                            ) from None
                        start, rolled_back = self.checkpointer.rollback(self.logger, self.recorder, str(err))["position"], True
        finally:
            self.logger.close()

    def _extra(self) -> dict:
        return {"curves": dict(self.recorder.history)}
