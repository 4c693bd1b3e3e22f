"""REST serving against in-process prediction, for the DQN policy and an image generator (DCGAN): latency (p50,
p99) of one request after another, and throughput, of `mlflow models serve`'s /invocations and of the same
MLflow model loaded with mlflow.pyfunc in this process. Models are trained on tiny budgets through `rlgen run`
(speed does not depend on the weights) in a throwaway store.

    python -m benchmarks.serving [--requests 300] [--data-dir ../shared/data/mnist/raw]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from benchmarks.common import DATA, RESULTS, Figure, print_table, run_quietly, save, scratch_home

TINY = {
    "dqn": ["total_steps=300", "learning_starts=100", "train_every=100", "gradient_steps=2", "eval_episodes=2",
            "val_episodes=2", "eval_every=0"],
    "gan": ["max_steps=3", "epochs=1", "fid_samples=100", "lenet_epochs=1", "grid_size=16"],
}  # fmt: skip
REQUESTS = {  # what one request asks: a batch of one (latency) and a batch of 64 (throughput)
    "dqn": lambda n: {"inputs": np.zeros((n, 4), dtype=np.float32).tolist()},
    "gan": lambda n: {"dataframe_split": {"columns": ["seed"], "data": [[i] for i in range(n)]}},
}
LOCAL = {
    "dqn": lambda n: np.zeros((n, 4), dtype=np.float32),
    "gan": lambda n: pd.DataFrame({"seed": np.arange(n, dtype=np.int64)}),
}


def percentiles(durations: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    p50, p99 = np.percentile(np.asarray(durations) * 1000, [50, 99])
    return float(p50), float(p99)


def timed(call: Callable[[], Any], count: int) -> list[float]:
    """Seconds of each of `count` calls, after 5 warm-up calls."""
    for _ in range(5):
        call()
    durations = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        durations.append(time.perf_counter() - began)
    return durations


def serve(uri: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`mlflow models serve` (via rlgen's command line) on 127.0.0.1, once it answers /ping."""
    from rlgen.servers import model_server_command

    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with log.open("w") as out:
        server = subprocess.Popen(model_server_command(uri, "127.0.0.1", port), env={**os.environ, "PATH": path},
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the model server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def measure(name: str, uri: str, port: int, home: Path, count: int) -> list[Figure]:
    import mlflow

    from rlgen.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    local = mlflow.pyfunc.load_model(uri)
    server = serve(uri, port, home / f"{name}.log")
    figures = []
    try:
        with httpx.Client(timeout=60) as http:
            url = f"http://127.0.0.1:{port}/invocations"
            for where, one, batch in (
                (
                    "REST",
                    lambda: http.post(url, json=REQUESTS[name](1)),
                    lambda: http.post(url, json=REQUESTS[name](64)),
                ),
                ("in-process", lambda: local.predict(LOCAL[name](1)), lambda: local.predict(LOCAL[name](64))),
            ):
                p50, p99 = percentiles(timed(one, count))
                seconds = sum(timed(batch, max(20, count // 10)))
                per_sec = max(20, count // 10) * 64 / seconds
                unit = "observations/s" if name == "dqn" else "images/s"
                figures += [
                    Figure(
                        "serving", f"{name} {where}: latency p50", p50, "ms", "one request of batch 1 after another"
                    ),
                    Figure(
                        "serving", f"{name} {where}: latency p99", p99, "ms", "one request of batch 1 after another"
                    ),
                    Figure(
                        "serving", f"{name} {where}: throughput", per_sec, unit, "requests of batch 64, one at a time"
                    ),
                ]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="Requests per latency figure.")
    parser.add_argument("--data-dir", type=Path, default=DATA / "mnist" / "raw")
    args = parser.parse_args()
    rlgen = str(Path(sys.executable).with_name("rlgen"))
    figures: list[Figure] = []
    with scratch_home("rlgen-bench-serving-") as home:
        for port, name in enumerate(("dqn", "gan"), start=5101):
            keys = [*TINY[name], *([f"data_dir={args.data_dir}"] if name == "gan" else [])]
            command = [rlgen, "run", name, *(a for key in keys for a in ("--set", key))]
            _, result = run_quietly(command, {}, home / f"{name}.json")
            registered = str(result["model"])  # NAME/VERSION
            figures += measure(name, f"models:/{registered}", port, home, args.requests)
    for name in ("dqn", "gan"):
        rest = next(f for f in figures if f.name == f"{name} REST: latency p50")
        local = next(f for f in figures if f.name == f"{name} in-process: latency p50")
        overhead = (rest.value or 0) - (local.value or 0)
        figures.append(
            Figure("serving", f"{name}: serving overhead per request", overhead, "ms", "REST p50 - in-process p50")
        )
    print_table(figures, "Serving: mlflow models serve against in-process pyfunc")
    save(figures, RESULTS / "serving.json", requests=args.requests)


if __name__ == "__main__":
    main()
