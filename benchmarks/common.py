"""What every benchmark shares: time a callable for a while, and turn figures into a table and JSON."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from benchmarks.machine import describe

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
