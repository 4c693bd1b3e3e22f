"""Resumable language-model training: a crashed or stopped run, resumed from its checkpoint, ends bit for bit where
an uninterrupted one does, with the same metric history; a non-finite loss fails naming the model, the step and the
last checkpoint, or with nan_rollback goes back once with half the learning rate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from models import lm
from models.common import NonFiniteLoss
from rlgen import tracking
from rlgen.checkpoints.io import load_checkpoint, run_checkpoint_path
from rlgen.checkpoints.stop import StopRequest
from rlgen.data import corpora, vocabulary
from rlgen.errors import TrainingInterrupted
from rlgen.families.lm import LMConfig
from rlgen.families.lm.trainer import LMTrainer
from rlgen.steps import train_model

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\nYou are "
    "all "
    "resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\nFirst Citizen:\nFirst, you know Caius "
    "Marcius "
    "is chief enemy to the people.\n\nAll:\nWe k"
)
TIMING = {"train/seconds", "perf/tokens_per_sec"}  # wall-clock figures: the same steps, other values


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, corpora.PreparedCorpus]:
    """260 characters: 5 windows of 12 tokens per epoch over 4 streams."""
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT)
    return path, corpora.prepare_corpus("char", "custom", path, tmp_path / "cache", tmp_path)


def tiny(path: Path, **overrides: object) -> LMConfig:
    """3 epochs of 5 steps, dropout on (its RNG must resume too), annealing on, a checkpoint every 5 steps."""
    return LMConfig(
        **{
            "corpus": "custom",
            "corpus_path": str(path),
            "hidden": 16,
            "embedding": 8,
            "layers": 2,
            "dropout": 0.2,
            "bptt": 12,
            "batch_size": 4,
            "eval_batch_size": 2,
            "epochs": 3,
            "log_every": 3,
            "checkpoint_every": 5,
            "sample_tokens": 5,
            "device": "cpu",
            "patience": 5,
            **overrides,
        }
    )


def hook_step(monkeypatch: pytest.MonkeyPatch, at: int, action: Callable[[lm.RNNModel], None]) -> None:
    """Run `action(model)` just before the `at`-th call of lm.train_step in this test."""
    calls, real = 0, lm.train_step

    def train_step(model: lm.RNNModel, *args: object) -> object:
        nonlocal calls
        calls += 1
        if calls == at:
            action(model)
        return real(model, *args)

    monkeypatch.setattr(lm, "train_step", train_step)


def same(a: object, b: object) -> bool:
    """Bitwise equality of nested checkpoint data."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def crash(model: lm.RNNModel, stop: StopRequest) -> None:
    raise RuntimeError("simulated crash")


def ask_to_stop(model: lm.RNNModel, stop: StopRequest) -> None:
    stop.set()  # what Ctrl-C does, at the next step boundary


@pytest.mark.parametrize(
    ("eval_every", "lr", "every", "at", "action", "interruption", "final_lr"),
    [
        # dies in step 12: resumes from step 10, an epoch end right after a validation that did not improve and
        # halved the rate
        (None, 0.2, 5, 12, crash, RuntimeError, 0.1),
        # Ctrl-C in step 8, mid-epoch: checkpoint at 8 right after a validation, with a carried state and running sums;
        # the last checkpoint (15) is the one written after training
        (4, 2e-3, 6, 8, ask_to_stop, TrainingInterrupted, 2e-3),
    ],
    ids=["crash-after-epoch-end", "stop-after-validation"],
)
def test_a_resumed_run_ends_bit_for_bit_as_an_uninterrupted_one(
    store: Path,
    corpus,
    monkeypatch: pytest.MonkeyPatch,
    eval_every: int | None,
    lr: float,
    every: int,
    at: int,
    action: Callable,
    interruption: type,
    final_lr: float,
) -> None:
    path, prepared = corpus
    cfg = tiny(path, eval_every=eval_every, lr=lr, checkpoint_every=every)
    assert lm.windows_per_pass(lm.batchify(torch.zeros(prepared.sizes["train"]), 4), 12) == 5
    with tracking.run(cfg.experiment, "straight") as straight:
        expected = train_model(cfg, prepared, straight)
    stop = StopRequest()
    hook_step(monkeypatch, at, lambda model: action(model, stop))
    with pytest.raises(interruption), tracking.run(cfg.experiment, "interrupted") as resumed:
        train_model(cfg, prepared, resumed, stop=stop)
    assert tracking.get_run(resumed).info.status == ("KILLED" if interruption is TrainingInterrupted else "FAILED")
    with tracking.run(cfg.experiment, "interrupted", reopen=resumed):
        got = train_model(cfg, prepared, resumed)

    assert got.steps == expected.steps == 15
    assert {k: v for k, v in got.metrics.items() if k not in TIMING} == {
        k: v for k, v in expected.metrics.items() if k not in TIMING
    }
    a, b = (load_checkpoint(run_checkpoint_path(run)) for run in (straight, resumed))
    assert a["step"] == b["step"] == 15
    assert same(a["trainer"], b["trainer"]) and same(
        a["rng"], b["rng"]
    )  # weights, optimizer, loop position, best weights
    assert a["trainer"]["optimizers"]["optimizer"]["param_groups"][0]["lr"] == final_lr
    metrics = tracking.get_run(straight).data.metrics
    assert (
        metrics.keys() == tracking.get_run(resumed).data.metrics.keys()
        and {"val/loss", "train/loss", "train/lr"} <= metrics.keys()
    )
    for key in metrics:
        want, have = tracking.metric_history(straight, key), tracking.metric_history(resumed, key)
        assert [s for s, _ in have] == [s for s, _ in want], key  # no gap, no duplicate
        assert key in TIMING or have == want, key
    assert tracking.list_artifacts(straight, "samples") == tracking.list_artifacts(
        resumed, "samples"
    )  # one sample per validation
    assert len(tracking.list_artifacts(straight, "samples")) == (3 if eval_every is None else 4)


@pytest.mark.parametrize("rollback", [False, True])
def test_a_non_finite_loss_fails_naming_the_step_and_checkpoint_or_rolls_back_once(
    store: Path, corpus, monkeypatch: pytest.MonkeyPatch, rollback: bool
) -> None:
    path, prepared = corpus
    cfg = tiny(path, nan_rollback=rollback, anneal=1.0, lr=0.01)
    hook_step(monkeypatch, 7, lambda model: model.encoder.weight.data.fill_(float("nan")))
    if not rollback:
        with pytest.raises(NonFiniteLoss) as failure, tracking.run(cfg.experiment, "nan") as run_id:
            train_model(cfg, prepared, run_id)
        message = str(failure.value)
        assert message.startswith("lm-char-tiny: non-finite train/loss = nan") and "at step 7" in message
        assert (
            f"the last good checkpoint is step 5 at {run_checkpoint_path(run_id)}" in message
            and "nan_rollback=true" in message
        )
        assert tracking.get_run(run_id).info.status == "FAILED"
        return
    with tracking.run(cfg.experiment, "nan") as run_id:
        trained = train_model(cfg, prepared, run_id)
    assert trained.steps == 15
    note = tracking.get_run(run_id).data.tags["rlgen.rollback"]
    assert "at step 7" in note and "rolled back to step 5 with learning rate(s) 0.005" in note
    assert tracking.metric_history(run_id, "train/lr") == [(3, 0.01), (6, 0.01), (9, 0.005), (12, 0.005), (15, 0.005)]
    assert [s for s, _ in tracking.metric_history(run_id, "train/loss")] == [3, 6, 9, 12, 15]
    assert (
        load_checkpoint(run_checkpoint_path(run_id))["trainer"]["optimizers"]["optimizer"]["param_groups"][0]["lr"]
        == 0.005
    )


def test_a_trainer_restored_at_its_end_has_nothing_left_to_train(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = torch.randint(0, 10, (300,))
    vocab = vocabulary.Vocabulary(list("0123456789"), "char")

    def trainer() -> LMTrainer:
        cfg = LMConfig(
            hidden=8,
            embedding=4,
            layers=1,
            bptt=10,
            epochs=3,
            lr=1e-2,
            anneal=0.5,
            patience=2,
            eval_batch_size=2,
            sample_tokens=2,
        )
        return LMTrainer(cfg, lm.RNNModel(10, 4, 8, 1), lm.batchify(data, 2), data, vocab, "0", torch.device("cpu"))

    done = trainer()
    while not done.done():
        done.step()
    again = trainer()
    again.load_state_dict(done.state_dict())
    assert (
        again.done()
        and again.steps == done.steps
        and (again.best, again.best_step, again.stopped) == (done.best, done.best_step, done.stopped)
    )
    assert same(again.model.state_dict(), done.model.state_dict()) and same(again.best_state, done.best_state)
