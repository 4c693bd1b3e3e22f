"""Progress bars for long work, and a recorder that keeps metric history for the plots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

MetricsCallback = Callable[[int, dict[str, float]], None]


class MetricRecorder:
    """An on_metrics callback that keeps every (step, value) per key in memory."""

    def __init__(self) -> None:
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.history[key].append((step, value))


def fan_out(*callbacks: MetricsCallback) -> MetricsCallback:
    """One on_metrics callback that calls each of `callbacks`."""

    def on_metrics(step: int, metrics: dict[str, float]) -> None:
        for callback in callbacks:
            callback(step, metrics)

    return on_metrics


@contextmanager
def progress_bar(total: int, description: str, shown: tuple[str, ...]) -> Iterator[MetricsCallback]:
    """A rich progress bar over `total` steps that displays the latest value of each `shown` metric."""
    latest: dict[str, float] = {}
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, metrics="")

        def on_metrics(step: int, metrics: dict[str, float]) -> None:
            latest.update((k, v) for k, v in metrics.items() if k in shown)
            text = " | ".join(f"{k.split('/')[-1]} {latest[k]:.3g}" for k in shown if k in latest)
            progress.update(task, completed=min(step, total), metrics=text)

        yield on_metrics
