"""torch's intra-op threads, for the pipeline's thread policy (rlgen/pipeline/branches.py shared_threads): the MLP VAE's
and the char LM's own trainers (built as their flows build them, default configs with a budget no measurement
exhausts, real data) stepped with 1 and with 2 threads in one process, then two training processes at once, each with
1 thread and each with 2 threads (the sum of their throughputs: what two concurrent branches get).

    python -m benchmarks.threads [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from benchmarks.common import DATA, RESULTS, Figure, Options, env, fmt, print_table, save, scratch_home, threads

WORKLOADS = {"vae": "MLP VAE step (batch 128)", "lm-char": "char LM step (32 x 128 tokens)"}


class Workload(NamedTuple):
    measure: Callable[[float, int], float]  # (seconds, warm-up steps) -> units/s of the trainer stepped that long
    unit: str


def workload(name: str) -> Workload:
    """`name`'s trainer with its default config (budget raised) on the real data, on the CPU, as image_speed and lm
    measure it (the data prepared, or found in the cache, under the current rlgen home)."""
    cpu = torch.device("cpu")
    if name == "vae":
        from benchmarks.image_speed import trainer

        training, cfg = trainer("vae", DATA / "mnist" / "raw", cpu)
        return Workload(lambda seconds, warmup: training.time(seconds, warmup).per_sec(cfg.batch_size), "images/s")
    from benchmarks.lm import build_train_step, training_rate

    step = build_train_step("char", cpu)
    return Workload(lambda seconds, warmup: training_rate(step, seconds, warmup)[0], "tokens/s")


def worker(name: str, n_threads: int, seconds: float, home: Path) -> None:
    """A measuring process: build and warm up, say `ready`, wait for `go` on stdin, measure, print the rate as JSON."""
    torch.set_num_threads(n_threads)
    with env(RLGEN_HOME=str(home), RLGEN_DATA_DIR=None):  # the data the parent prepared
        job = workload(name)
    job.measure(0.0, 1)  # warm-up: a few steps
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps({"rate": job.measure(seconds, 0)}), flush=True)


def concurrent_rates(name: str, n_threads: int, seconds: float, home: Path, processes: int = 2) -> list[float]:
    """Each process's rate while `processes` of them train at once with `n_threads` threads each (started together)."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.threads",
        "--worker",
        name,
        "--threads",
        str(n_threads),
        "--seconds",
        str(seconds),
        "--cache",
        str(home),
    ]
    procs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError(f"a benchmarks.threads worker for {name} did not start (exit status {p.wait()})")
        for p in procs:  # the barrier: every process is built and warm before any measures
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        return [json.loads(p.stdout.readline())["rate"] for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def thread_figures(seconds: float) -> list[Figure]:
    """Per workload: one process at 1 and 2 threads, and two processes at 1 and 2 threads each."""
    figures = []
    with scratch_home("rlgen-bench-threads-") as home:
        for name, label in WORKLOADS.items():
            job = workload(name)
            alone, pairs = {}, {}
            for n in (1, 2):
                with threads(n):
                    alone[n] = job.measure(seconds, 1)
                pairs[n] = concurrent_rates(name, n, seconds, home)
            for n in (1, 2):
                vs = f"; {alone[2] / alone[1]:.2f}x 1 thread" if n == 2 else ""
                figures.append(
                    Figure("threads", f"{label}, 1 process", alone[n], job.unit, f"{n} thread(s){vs}", threads=n)
                )
            for n in (1, 2):
                vs = f"; {sum(pairs[2]) / sum(pairs[1]):.2f}x the 1-thread pair" if n == 2 else ""
                each = " + ".join(fmt(r) for r in pairs[n])
                figures.append(
                    Figure(
                        "threads",
                        f"{label}, 2 processes (sum)",
                        sum(pairs[n]),
                        job.unit,
                        f"{n} thread(s) each: {each}{vs}",
                        threads=n,
                        extra={"rates": pairs[n]},
                    )
                )
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's thread figures (CPU only): 4 s per measurement with --quick, 15 s otherwise."""
    return thread_figures(4.0 if opts.quick else 15.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per figure")
    parser.add_argument("--worker", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads, args.seconds, args.cache)
        return
    rows = thread_figures(args.seconds)
    print_table(rows, "torch intra-op threads")
    save(rows, RESULTS / "threads.json")


if __name__ == "__main__":
    main()
