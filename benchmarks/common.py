"""What every benchmark shares: a family's trainer built as the flow builds it and timed for a while (or to its end),
time a callable for a while, a throwaway rlgen home, and figures as a table and JSON."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from benchmarks.machine import describe
from models.common import autocast
from models.training import Trainer
from rlgen import steps
from rlgen.config.base import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATA = ROOT.parent / "shared" / "data"  # the offline datasets beside the checkout (../shared/data)


class Options(NamedTuple):
    """What the suite passes to every benchmark's `figures()`."""

    quick: bool
    device: torch.device


class Timing(NamedTuple):
    calls: int
    seconds: float  # wall time of the measured calls, warm-up excluded
    median: float  # median seconds per call

    def per_sec(self, units_per_call: float = 1.0) -> float:
        """Units (images, tokens, steps) per second."""
        return self.calls * units_per_call / self.seconds


def time_for(
    fn: Callable[[], Any], seconds: float, warmup: int = 1, min_calls: int = 3, device: torch.device | None = None
) -> Timing:
    """Call `fn` `warmup` times, then repeatedly for at least `seconds` (and `min_calls` calls); CUDA work is
    synchronized per call."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    durations: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(durations) < min_calls:
        began = time.perf_counter()
        fn()
        sync()
        durations.append(time.perf_counter() - began)
    return Timing(len(durations), time.perf_counter() - started, statistics.median(durations))


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


class Training(NamedTuple):
    """A family's trainer over fresh networks, as the flow's training step builds it, and how the driver runs it.

    `step()` is one position of the driver's loop without the recording: `trainer.step()`, then
    `trainer.reports()` (the end-of-epoch validation, sample grids and the like are computed, and stored nowhere),
    under the bf16 autocast the driver applies when the config asks for it on a CUDA device.
    """

    trainer: Trainer
    device: torch.device
    amp: bool

    def step(self) -> None:
        self.trainer.step()
        self.trainer.reports()

    def run(self) -> float:
        """Step until `trainer.done()` (the budget, or the trainer's own early stop); the seconds it took."""
        sync = _sync(self.device)
        with autocast(self.device, self.amp):
            started = time.perf_counter()
            while not self.trainer.done():
                self.step()
            sync()
            return time.perf_counter() - started

    def warm_up(self, steps: int) -> None:
        """Take `steps` steps (fewer if the trainer is done first), untimed: first calls allocate and pick kernels."""
        with autocast(self.device, self.amp):
            for _ in range(steps):
                if not self.trainer.done():
                    self.step()
        _sync(self.device)()

    def time(
        self, seconds: float, warmup: int = 1, min_steps: int = 3, excluded: Callable[[], float] | None = None
    ) -> Timing:
        """Warm up for `warmup` steps, then step for at least `seconds` (and `min_steps` steps), or until
        `trainer.done()`.

        `excluded()` is the trainer's running total of seconds that are not training (the LM's validations): what it
        grows by while measuring is taken off the measured time, as the trainer's own perf/* figures do. CUDA work is
        synchronized per step.
        """
        sync, skipped = _sync(self.device), excluded or (lambda: 0.0)
        self.warm_up(warmup)
        with autocast(self.device, self.amp):
            durations: list[float] = []
            before, started = skipped(), time.perf_counter()
            while not self.trainer.done() and (time.perf_counter() - started < seconds or len(durations) < min_steps):
                began = time.perf_counter()
                self.step()
                sync()
                durations.append(time.perf_counter() - began)
            total = time.perf_counter() - started - (skipped() - before)
        if not durations:
            raise RuntimeError(
                f"{self.trainer.name}: the budget ({self.trainer.budget} steps) ran out during the warm-up; "
                "raise epochs or max_steps"
            )
        return Timing(len(durations), total, statistics.median(durations))


def build_trainer(cfg: TrainConfig, prepared: Any, context: Any = None) -> Training:
    """`cfg`'s trainer on `prepared` data (rlgen.steps.prepare), built by rlgen.steps.build_trainer, as every training
    run builds it; with the flow's evaluation `context` (rlgen.steps.context), image trainers score val/fid_lenet."""
    trainer, device = steps.build_trainer(cfg, prepared, context)
    return Training(trainer, device, cfg.amp)


@dataclass
class Figure:
    """One measured number, with what it was measured on (threads and device at creation; cpu, torch and command at
    saving)."""

    benchmark: str
    name: str
    value: float | None
    unit: str
    detail: str = ""
    device: str = "cpu"
    threads: int = field(default_factory=torch.get_num_threads)
    extra: dict[str, Any] = field(default_factory=dict)


def fmt(value: float | None) -> str:
    """A table cell: whole numbers from 100 up (thousands separated), else 3 significant figures."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2e}"


def print_table(figures: Iterable[Figure], title: str) -> None:
    """The figures as one rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("benchmark", "left"),
        ("figure", "left"),
        ("value", "right"),
        ("unit", "left"),
        ("threads", "right"),
        ("device", "left"),
        ("detail", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for f in figures:
        table.add_row(f.benchmark, f.name, fmt(f.value), f.unit, str(f.threads), f.device, f.detail)
    Console(width=None if sys.stdout.isatty() else 220).print(table)  # a log file gets whole rows


def save(figures: Iterable[Figure], path: Path, **summary: Any) -> Path:
    """Write the figures as JSON, each with the machine it was measured on and the command that measured it."""
    figures = list(figures)
    base = describe(torch.device("cpu"))
    machines = {d: describe(torch.device(d)) for d in {f.device for f in figures}}
    rows = [{**asdict(f), "machine": {**machines[f.device], "torch_threads": f.threads}} for f in figures]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"command": base["command"], "machine": base, **summary, "figures": rows}, indent=2, default=str)
    )
    return path


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


@contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (None: remove) environment variables for a block, then restore them: e.g. RLGEN_HOME of a throwaway store."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            _set_env(key, value)
        yield
    finally:
        for key, value in saved.items():
            _set_env(key, value)


@contextmanager
def scratch_home(prefix: str = "rlgen-bench-") -> Iterator[Path]:
    """A throwaway rlgen home for a block (removed afterwards): the MLflow store, prepared data and checkpoints of
    what runs in this process go there, whatever RLGEN_DATA_DIR, RLGEN_CHECKPOINT_DIR or MLFLOW_TRACKING_URI say."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        env(RLGEN_HOME=tmp, RLGEN_DATA_DIR=None, RLGEN_CHECKPOINT_DIR=None, MLFLOW_TRACKING_URI=None),
    ):
        yield Path(tmp)


def run_quietly(command: list[str], variables: dict[str, str], result_file: Path | None = None) -> tuple[float, Any]:
    """Run `command` with extra environment `variables`, its output kept back unless it fails; returns its wall time
    and, given `result_file`, the JSON that `rlgen run` writes there (RLGEN_RESULT_JSON)."""
    extra = {**variables, **({"RLGEN_RESULT_JSON": str(result_file)} if result_file else {})}
    started = time.perf_counter()
    done = subprocess.run(command, check=False, env={**os.environ, **extra}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:4])} ... exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return seconds, json.loads(result_file.read_text()) if result_file else None


@contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` for a block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
