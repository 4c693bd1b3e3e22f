"""Chaos resume: every registered family's training is killed with SIGKILL at five seeded random steps in succession,
resumed each time, and compared with an uninterrupted run of the same settings (benchmarks/chaos.py is the harness;
`python -m benchmarks.chaos` runs it with more kills and writes the figure in docs/operations.md).

Every process is a fork of one warm interpreter (benchmarks/forker.py), so five kills cost milliseconds, not the
seconds of a fresh torch, MLflow and Prefect import each. Every family goes through its flow's training (the training
run, `--resume`'s checks and stored config, the driver); one goes through the whole command line, `rlgen run lm` then
`rlgen run lm --resume RUN_ID` five times, evaluation, export and registration included. The image, Langevin and
language models must end bit for bit as the uninterrupted run, weights and metric history alike. DQN cannot snapshot
its environments, so a resumed run plays new episodes: its promise is the same step and update counts, metric rows on
the step schedule at the same steps with no gap or duplicate, no episode logged twice, and a replay memory that holds
every transition up to each checkpoint it resumed from. Nothing here depends on the status a killed run is left in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.chaos import Launcher, Outcome, chaos, uninterrupted
from benchmarks.chaos_setups import MNIST, SHAKESPEARE, Setup, setups
from benchmarks.forker import Forker
from rlgen import tracking
from rlgen.registry import FAMILIES

KILLS = 5
SEED = 17

pytestmark = pytest.mark.skipif(
    not (MNIST.is_dir() and SHAKESPEARE.is_file()), reason=f"the offline data is not at {MNIST.parents[1]}"
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One rlgen home for the module: each family's chaos run and its reference, side by side in one store."""
    return tmp_path_factory.mktemp("chaos")


@pytest.fixture(autouse=True)
def in_home(home: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness, in this process, reads the same store and checkpoints as the processes it kills."""
    monkeypatch.setenv("RLGEN_HOME", str(home))
    monkeypatch.setenv("RLGEN_DATA_DIR", str(shared_data))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def forker(home: Path, shared_data: Path, prefect_server: str) -> Iterator[Forker]:
    """The warm interpreter every killed process is forked from: one torch thread, this module's store."""
    env = {**os.environ, "RLGEN_HOME": str(home), "RLGEN_DATA_DIR": str(shared_data), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with Forker({**env, "PREFECT_API_URL": prefect_server}) as warm:
        yield warm


def setup_of(family: str, home: Path) -> Setup:
    """The harness's tiny settings for `family`; a registered family without them fails, naming where they go."""
    known = setups(KILLS, home)
    if family not in known:
        pytest.fail(f"benchmarks/chaos_setups.py has no chaos settings for the registered family {family!r}; add them")
    return known[family]


def run_chaos(family: str, entry: str, forker: Forker, home: Path) -> tuple[Outcome, Setup, str]:
    """An uninterrupted run, then the chaos run; the outcome, the settings and the reference's run id."""
    setup, launcher = setup_of(family, home), Launcher(forker, entry)
    reference = uninterrupted(family, setup, launcher, home)
    return chaos(family, setup, launcher, home, kills=KILLS, seed=SEED, reference=reference), setup, reference


def assert_survived(outcome: Outcome, setup: Setup) -> None:
    """Five kills, each after a checkpoint of its own process and before the end; the run then reached its budget
    with every metric row of the reference once, none lost, none twice, none extra."""
    killed = [s for s in outcome.segments if s.killed_after is not None]
    assert outcome.kills == KILLS and len(outcome.segments) == KILLS + 1
    assert all(s.resumed_from < s.killed_after < setup.budget for s in killed if s.killed_after is not None)
    assert [s.resumed_from for s in outcome.segments[1:]] == [s.killed_after for s in killed]
    assert outcome.steps == outcome.reference_steps == setup.budget
    assert (outcome.rows.lost, outcome.rows.duplicated, outcome.rows.extra) == (0, 0, 0), outcome.rows


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_training_killed_five_times_ends_as_an_uninterrupted_one(family: str, forker: Forker, home: Path) -> None:
    outcome, setup, reference = run_chaos(family, "train", forker, home)
    assert_survived(outcome, setup)
    if setup.bitwise:
        assert outcome.rows.unequal == 0 and outcome.bitwise and outcome.max_abs_diff == 0.0, outcome
        return
    # DQN: new episodes after each resume, so other transitions and weights; the same counts and step schedule
    assert not outcome.bitwise
    (run,) = [r for r in _train_runs(family) if r.info.run_id != reference]
    ours, theirs = run.data.metrics, tracking.get_run(reference).data.metrics
    assert ours["train/steps"] == theirs["train/steps"] == setup.budget
    assert ours["train/updates"] == theirs["train/updates"]
    killed = [s for s in outcome.segments if s.killed_after is not None]
    assert all(s.memory == s.killed_after for s in killed)  # one transition per step, none lost at a checkpoint


def test_the_command_line_resumes_a_training_killed_five_times_bit_for_bit(forker: Forker, home: Path) -> None:
    outcome, setup, reference = run_chaos("lm", "cli", forker, home)
    assert_survived(outcome, setup)
    assert outcome.rows.unequal == 0 and outcome.bitwise, outcome  # evaluation and export metrics included
    (run,) = [r for r in _train_runs("lm") if r.info.run_id != reference and "eval/valid_loss" in r.data.metrics]
    assert int(run.data.tags["rlgen.resumed"]) == KILLS


def _train_runs(family: str) -> list:
    from benchmarks.chaos import train_runs

    return [tracking.get_run(run_id) for run_id in train_runs(family)]
