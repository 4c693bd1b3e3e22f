"""The chaos harness: kill -9 each family's training at seeded random steps, resume it every time, and compare the
result with an uninterrupted run. tests/test_chaos.py drives it; `python -m benchmarks.chaos` runs it for every
registered family and writes benchmarks/results/chaos.json and docs/figures/chaos.png (docs/operations.md):

    python -m benchmarks.chaos                  # 5 kills per family, seed 17, as the tests
    python -m benchmarks.chaos --kills 8 --only dcgan lm

A kill waits until the training has written a checkpoint at or past a seeded random step, then lands at a seeded
random moment within the next checkpoint interval: mid-step, mid-checkpoint, mid-metric-flush. The resumed run's
final weights (its `checkpoints/<family>.pt` artifact) and its MLflow metric history (per key: steps and values) are
compared with those of an uninterrupted run. tests/test_chaos.py runs the same harness on smaller budgets.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.chaos_setups import Setup
from benchmarks.forker import Forker

DEADLINE = 120.0  # seconds a segment may take to reach its kill point (or its end)
MAX_DELAY = 1.0  # the longest wait, in seconds, between the kill point's checkpoint and the kill
TIMING = ("train/seconds", "perf/")  # wall-clock figures: the same steps, other values


class Segment(NamedTuple):
    """One process of a chaos run."""

    resumed_from: int  # the checkpoint step it started from (0: the first)
    killed_after: int | None  # the last checkpoint step it wrote before SIGKILL; None: it ran to its end
    memory: int | None  # transitions in that checkpoint's replay memory, where it holds them (DQN)


class Rows(NamedTuple):
    """Metric rows of a resumed run against its reference, over every key but the wall-clock ones."""

    lost: int  # (key, step) rows of the reference missing from the resumed run
    duplicated: int  # rows stored again for a key and step the run already has
    extra: int  # rows the reference does not have
    unequal: int  # rows at the same key and step with another value


class Outcome(NamedTuple):
    """A chaos run against its uninterrupted reference."""

    family: str
    segments: list[Segment]
    steps: int  # the resumed run's final position
    reference_steps: int
    rows: Rows
    bitwise: bool  # every tensor of the final checkpoint torch.equal to the reference's
    max_abs_diff: float  # the largest absolute difference between the final weights
    seconds: float

    @property
    def kills(self) -> int:
        return sum(s.killed_after is not None for s in self.segments)


def cli_segment(argv: list[str]) -> int:
    """`rlgen ARGV` in this (forked) process: the real command line, parsing, preflight and flow included."""
    from rlgen.cli import make_app

    return int(make_app()(argv, standalone_mode=False) or 0)


def train_segment(family: str, settings: dict[str, Any] | None, resume: str | None) -> int:
    """A model flow's training alone: its training run, `--resume`'s checks and stored config, the driver."""
    from rlgen import steps
    from rlgen.config.base import validate_config
    from rlgen.registry import family as find
    from rlgen.tracking.lifecycle import resume_target, tracked_run

    config_cls = find(family).config
    cfg = resume_target(config_cls, resume)[0] if resume else validate_config(config_cls, settings or {})
    prepared = steps.prepare(cfg)
    with tracked_run(cfg, cfg.registered_name, role="train", resume=resume) as run_id:
        context = steps.context(cfg, prepared, run_id)  # as the flow: image models then score val/fid_lenet
        steps.train_model(cfg, prepared, run_id, context=context)
    return 0


class Launcher:
    """Starts segments: warm forks of a `Forker` (the CLI or the training alone), or fresh `rlgen` processes."""

    def __init__(self, forker: Forker | None = None, entry: str = "cli") -> None:
        if entry not in ("cli", "train") or (forker is None and entry != "cli"):
            raise ValueError(f"entry {entry!r}: 'cli', or 'train' with a forker")
        self.forker, self.entry = forker, entry
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def start(self, family: str, settings: dict[str, Any] | None, resume: str | None, log: Path) -> None:
        """Start training `family` from `settings`, or resuming run `resume`."""
        argv = ["run", family, *(["--resume", resume] if resume else _sets(settings or {}))]
        if self.forker is not None and self.entry == "train":
            self.pid = self.forker.start("benchmarks.chaos:train_segment", [family, settings, resume], log)
        elif self.forker is not None:
            self.pid = self.forker.start("benchmarks.chaos:cli_segment", [argv], log)
        else:
            with log.open("ab") as out:
                rlgen = Path(sys.executable).with_name("rlgen")
                self.process = subprocess.Popen([str(rlgen), *argv], stdout=out, stderr=subprocess.STDOUT)
            self.pid = self.process.pid

    def ended(self) -> bool:
        """Whether the segment has exited."""
        if self.forker is not None:
            return self.forker.poll() is not None
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Wait until the segment is gone; its exit status (-9 when killed)."""
        if self.forker is not None:
            return self.forker.wait()
        assert self.process is not None
        return self.process.wait(timeout=DEADLINE)


def _sets(settings: dict[str, Any]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


class Watch:
    """The resumable checkpoint of the one new training run under the checkpoints folder, re-read when it changes."""

    def __init__(self, root: Path) -> None:
        self.root, self.known = root, {p.name for p in root.glob("*")} if root.is_dir() else set()
        self.run_id: str | None = None
        self.step, self.stamp, self.changed_at, self.per_step = 0, 0, 0.0, 0.02
        self.payload: dict[str, Any] = {}

    def check(self) -> int:
        """The step of the newest checkpoint seen (0 before the first)."""
        from rlgen.checkpoints.io import load_checkpoint

        if self.run_id is None:
            found = [p.name for p in self.root.glob("*") if p.name not in self.known] if self.root.is_dir() else []
            if not found:
                return self.step
            self.run_id = found[0]
        path = self.root / self.run_id / "train.pt"
        try:
            if (stamp := path.stat().st_mtime_ns) != self.stamp:
                payload, now = load_checkpoint(path), time.monotonic()
                step = int(payload["step"])
                if step > self.step and self.changed_at:
                    self.per_step = (now - self.changed_at) / (step - self.step)
                self.step, self.stamp, self.changed_at, self.payload = step, stamp, now, payload
        except (FileNotFoundError, ValueError):  # not written yet, being replaced, or removed at the run's end
            pass
        return self.step


def kill_plan(budget: int, kills: int, every: int, seed: int) -> list[int]:
    """Seeded random checkpoint steps to kill after: distinct, increasing, in the first two thirds of the budget (a
    kill lands a little later than its step: the last third keeps it before the end)."""
    candidates = list(range(every, budget - budget // 3 + 1, every))
    if len(candidates) < kills:
        raise ValueError(f"{kills} kills every {every} steps need a budget of {3 * kills * every // 2}, got {budget}")
    return sorted(random.Random(seed).sample(candidates, kills))


def segment(launcher: Launcher, watch: Watch, target: int | None, every: int, rng: random.Random) -> Segment:
    """Wait for a checkpoint at or past `target` (and past the one it resumed from), then SIGKILL at a random moment
    within the next checkpoint interval; with `target` None, let the segment run to its end. RuntimeError if the
    segment fails, or ends before its kill."""
    started, deadline = watch.check(), time.monotonic() + DEADLINE
    watch.changed_at = 0.0  # the first checkpoint of a process comes after its start-up: no measure of a step
    target = None if target is None else max(target, started + every)
    while target is not None and watch.check() < target:
        if launcher.ended() or time.monotonic() > deadline:
            raise RuntimeError(f"the training ended or stalled before step {target} (at {watch.step})")
        time.sleep(0.005)
    if target is None:
        status = launcher.wait()
        if status != 0:
            raise RuntimeError(f"the last segment exited with status {status}")
        return Segment(started, None, None)
    time.sleep(rng.random() * min(watch.per_step * every, MAX_DELAY))
    launcher.kill()
    status, killed_after = launcher.wait(), watch.check()
    if status != -signal.SIGKILL:
        raise RuntimeError(f"the segment to kill after step {target} exited with status {status} first")
    memory = watch.payload["trainer"]["loop"].get("memory", {}).get("transitions", {}).get("action")
    return Segment(started, killed_after, None if memory is None else len(memory))


def compare_rows(run_id: str, reference_id: str, episodic: tuple[str, ...] = ()) -> Rows:
    """Every metric's history of `run_id` against `reference_id`'s, wall-clock keys aside. Keys starting with one of
    `episodic` are logged when episodes end, which a resumed run's new episodes move: only their duplicates count."""
    from rlgen.tracking.runs import get_run, metric_history

    keys = set(get_run(run_id).data.metrics) | set(get_run(reference_id).data.metrics)
    lost = duplicated = extra = unequal = 0
    for key in sorted(k for k in keys if not k.startswith(TIMING)):
        ours, theirs = _by_step(metric_history(run_id, key)), _by_step(metric_history(reference_id, key))
        if episodic and key.startswith(episodic):  # at most as many rows per step as the reference ever has
            allowed = max((len(v) for v in theirs.values()), default=1)
            duplicated += sum(max(0, len(v) - allowed) for v in ours.values())
            continue
        for step in ours.keys() | theirs.keys():
            have, want = ours.get(step, []), theirs.get(step, [])
            if not want:
                extra, duplicated = extra + 1, duplicated + len(have) - 1
            elif len(have) < len(want):
                lost += len(want) - len(have)
            else:
                duplicated += len(have) - len(want)
                unequal += have[: len(want)] != want
    return Rows(lost, duplicated, extra, unequal)


def _by_step(history: list[tuple[int, float]]) -> dict[int, list[float]]:
    rows: dict[int, list[float]] = {}
    for step, value in history:
        rows.setdefault(step, []).append(value)
    return rows


def compare_weights(run_id: str, reference_id: str, family: str, tmp: Path) -> tuple[bool, float, int, int]:
    """Bitwise equality and the largest difference of the final weights and buffers; both runs' steps."""
    import torch

    from rlgen.checkpoints.io import load_checkpoint
    from rlgen.tracking.artifacts import download

    ours, theirs = (load_checkpoint(download(r, f"checkpoints/{family}.pt", tmp / r)) for r in (run_id, reference_id))
    pairs = [
        (ours[part][name][key] if part == "modules" else ours[part][name], tensor)
        for part in ("modules", "buffers")
        for name, value in theirs[part].items()
        for key, tensor in (value.items() if part == "modules" else [("", value)])
    ]
    equal = all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)
    diff = max((float((a.double() - b.double()).abs().max()) for a, b in pairs if a.numel()), default=0.0)
    return equal, diff, int(ours["step"]), int(theirs["step"])


def chaos(
    family: str, setup: Setup, launcher: Launcher, work: Path, *, kills: int, seed: int, reference: str
) -> Outcome:
    """Train `family` with `kills` SIGKILLs at seeded random steps, resuming each time; compare with run `reference`
    (an uninterrupted run of the same settings in the same store)."""
    from rlgen.settings import checkpoints_dir

    started, rng = time.perf_counter(), random.Random(seed)
    watch, log = Watch(checkpoints_dir()), work / f"{family}-chaos.log"
    segments = []
    for target in [*kill_plan(setup.budget, kills, setup.every, seed), None]:
        launcher.start(family, setup.settings if watch.run_id is None else None, watch.run_id, log)
        segments.append(segment(launcher, watch, target, setup.every, rng))
    assert watch.run_id is not None
    rows = compare_rows(watch.run_id, reference, setup.episodic)
    bitwise, diff, steps, reference_steps = compare_weights(watch.run_id, reference, family, work)
    return Outcome(family, segments, steps, reference_steps, rows, bitwise, diff, time.perf_counter() - started)


def uninterrupted(family: str, setup: Setup, launcher: Launcher, work: Path) -> str:
    """Train `family` once without a kill; its training run's id."""
    from rlgen.settings import checkpoints_dir

    before = set(train_runs(family))
    launcher.start(family, setup.settings, None, work / f"{family}-reference.log")
    segment(launcher, Watch(checkpoints_dir()), None, setup.every, random.Random(0))
    (run_id,) = set(train_runs(family)) - before
    return run_id


def train_runs(family: str) -> list[str]:
    """The ids of `family`'s training runs in the store."""
    from rlgen.tracking.store import client

    mlflow = client()
    experiment = mlflow.get_experiment_by_name("rlgen")
    if experiment is None:
        return []
    found = mlflow.search_runs(
        [experiment.experiment_id], f"tags.`rlgen.role` = 'train' and tags.`rlgen.family` = '{family}'"
    )
    return [r.info.run_id for r in found]


def main() -> None:
    import argparse
    import json
    import os
    import tempfile

    from benchmarks.chaos_setups import setups

    parser = argparse.ArgumentParser(
        description="Kill -9 each family's training repeatedly; compare with an unkilled run"
    )
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--only", nargs="+", default=None, metavar="FAMILY")
    args = parser.parse_args()

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from benchmarks.common import DATA, RESULTS, ROOT
    from benchmarks.machine import describe
    from rlgen.registry import FAMILIES

    rows = []
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        home = Path(tmp)
        os.environ.update({"RLGEN_HOME": str(home), "RLGEN_DATA_DIR": str(home / "data")})
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        known = setups(args.kills, home)
        with Forker(env) as forker:
            for family in args.only or list(FAMILIES):
                setup, launcher = known[family], Launcher(forker, "train")
                reference = uninterrupted(family, setup, launcher, home)
                outcome = chaos(family, setup, launcher, home, kills=args.kills, seed=args.seed, reference=reference)
                row = {
                    "family": family,
                    "kills": outcome.kills,
                    "steps": outcome.steps,
                    "reference_steps": outcome.reference_steps,
                    "killed_after": [s.killed_after for s in outcome.segments if s.killed_after is not None],
                    **outcome.rows._asdict(),
                    "bitwise": outcome.bitwise,
                    "promise": "bitwise" if setup.bitwise else "counts and step schedule (new episodes)",
                    "max_abs_diff": outcome.max_abs_diff,
                    "seconds": round(outcome.seconds, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    figure = ROOT / "docs" / "figures" / "chaos.png"
    plot(rows, figure)
    result = {"benchmark": "chaos", "machine": describe(__import__("torch").device("cpu")), "kills": args.kills}
    result |= {"seed": args.seed, "data": str(DATA), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chaos.json").write_text(json.dumps(result, indent=2))


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Kills survived per family, each bar labelled with the metric rows lost and how the weights compared."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = [r["family"] for r in rows]
    bars = ax.bar(names, [r["kills"] for r in rows], color=["tab:green" if r["bitwise"] else "tab:blue" for r in rows])
    for bar, r in zip(bars, rows, strict=True):
        weights = "bitwise equal" if r["bitwise"] else f"max |dw| {r['max_abs_diff']:.2g}"
        label = f"lost rows {r['lost']}\n{weights}"
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("kill -9 survived (resumed each time)")
    ax.set_ylim(0, max((r["kills"] for r in rows), default=1) * 1.5)
    ax.set_title("Chaos resume: every family killed and resumed, compared with an uninterrupted run")
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
