"""Checkpoints and resume: kill -9 mid-training, Ctrl-C/SIGTERM, Prefect retries and NaN rollback, on real
training (DCGAN and DQN) against temporary MLflow stores.

A run killed that way is RUNNING until an rlgen command looks: then it is closed as crashed (FAILED, with the
tag rlgen.crashed naming the step of its last checkpoint). Resumed image training is compared with an
uninterrupted run of the same seed and must be *bitwise* equal: the checkpoint holds every RNG (python, numpy,
torch), the models, the optimizers and the loop's position (epoch, batch, that epoch's permutation), and the
CPU kernels used here are deterministic for a fixed thread count. DQN cannot snapshot its environments, so a
resumed DQN run starts new episodes; its test checks the counters and the metric history, not the weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import models.gan
from models.common import NonFiniteLoss
from rlgen import steps, tracking
from rlgen.checkpoints.io import load_checkpoint, run_checkpoint_path
from rlgen.cli import app
from rlgen.families.dqn import DQNConfig
from rlgen.families.gan import GANConfig
from rlgen.steps import train_model
from rlgen.tracking.crashes import close_crashed
from rlgen.training.driver import _Checkpoint

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "raw"
GAN = {
    "variant": "dcgan",
    "data_dir": str(MNIST),
    "batch_size": 32,
    "epochs": 2,
    "max_steps": 100,
    "checkpoint_every": 20,
    "grid_size": 16,
}

pytestmark = pytest.mark.skipif(not MNIST.is_dir(), reason=f"the offline MNIST copy is not at {MNIST}")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """One torch thread here and in the subprocesses: tiny models run no slower, and a busy machine cannot
    starve a thread pool (the bitwise comparisons need the same thread count on both sides anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


TRAIN_IN_SUBPROCESS = """
import sys
from rlgen import steps, tracking
from rlgen.families.gan import GANConfig
from rlgen.steps import train_model
cfg = GANConfig.model_validate_json(sys.argv[1])
with tracking.run("rlgen", "killed") as run_id:
    open(sys.argv[2], "w").write(run_id)
    train_model(cfg, steps.prepare(cfg), run_id)
"""


def history(run_id: str, key: str) -> list[tuple[int, float]]:
    return tracking.metric_history(run_id, key)


def final_weights(run_id: str, tmp: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(tracking.download(run_id, "checkpoints/gan.pt", tmp))["modules"]["generator"]


def test_training_killed_with_sigkill_resumes_bitwise_equal_to_an_uninterrupted_run(
    store: Path, tmp_path: Path
) -> None:
    cfg = GANConfig(**GAN)
    env = {**os.environ, "RLGEN_HOME": str(store.parent)}
    id_file = tmp_path / "run_id"
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN_IN_SUBPROCESS, cfg.model_dump_json(), str(id_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (
            id_file.is_file()
            and (path := run_checkpoint_path(id_file.read_text())).is_file()
            and load_checkpoint(path)["step"] >= 60
        ):
            assert process.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    run_id = id_file.read_text()
    killed_at = load_checkpoint(path)["step"]
    assert 60 <= killed_at < cfg.max_steps
    assert tracking.get_run(run_id).info.status == "RUNNING"  # kill -9 leaves no chance to close it ...
    (crash,) = close_crashed()  # ... so the next rlgen command that looks at the store closes it
    assert crash.run_id == run_id and "is gone" in crash.reason
    assert f"last checkpoint is at step {killed_at}" in crash.reason
    assert tracking.get_run(run_id).data.tags["rlgen.crashed"] == crash.reason
    assert tracking.get_run(run_id).info.status == "FAILED"

    prepared = steps.prepare(cfg)
    resumed = train_model(cfg, prepared, run_id)  # what a Prefect retry or --resume does: the same run id
    with tracking.run("rlgen", "uninterrupted") as reference_id:
        reference = train_model(cfg, prepared, reference_id)

    assert resumed.steps == reference.steps == cfg.max_steps
    for key in ("train/d_loss", "train/g_loss"):
        logged = [s for s, _ in history(run_id, key)]
        assert logged == sorted(set(logged)) == list(range(50, cfg.max_steps + 1, 50))  # no gap, no duplicate
        assert history(run_id, key) == history(reference_id, key)  # bitwise: the same floats
    ours, theirs = final_weights(run_id, tmp_path / "a"), final_weights(reference_id, tmp_path / "b")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_the_best_epoch_survives_a_crash_and_resume_ends_bitwise_equal(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the flow's evaluator, each epoch's val/fid_lenet is scored and the best epoch's weights are kept: they
    are in the checkpoint, so a run that crashed after scoring epoch 1 ends with the same curve, the same kept
    epoch and the same final weights as an uninterrupted run, bit for bit."""
    cfg = GANConfig(
        **{**GAN, "epochs": 3, "batch_size": 100, "checkpoint_every": 10},
        val_fraction=0.45,  # 1,500 training images: epochs of 15 batches
        test_fraction=0.4,
        val_fid_samples=100,
        lenet_epochs=1,
    )
    prepared = steps.prepare(cfg)
    with tracking.run("rlgen", "evaluator") as parent_id:
        evaluator = steps.context(cfg, prepared, parent_id)
    original = _Checkpoint.due

    def crash_at_step_25(self: _Checkpoint) -> bool:
        if self.trainer.steps == 25:
            raise OSError("simulated crash")
        return original(self)

    monkeypatch.setattr(_Checkpoint, "due", crash_at_step_25)
    with pytest.raises(OSError), tracking.run("rlgen", "crashed") as run_id:
        train_model(cfg, prepared, run_id, context=evaluator)
    saved = load_checkpoint(run_checkpoint_path(run_id))
    assert saved["step"] == 20 and saved["trainer"]["loop"]["best"]["epoch"] == 1  # epoch 1 ended at step 15

    monkeypatch.setattr(_Checkpoint, "due", original)
    with tracking.run("rlgen", "crashed", reopen=run_id):
        resumed = train_model(cfg, prepared, run_id, context=evaluator)
    with tracking.run("rlgen", "uninterrupted") as reference_id:
        reference = train_model(cfg, prepared, reference_id, context=evaluator)
    curve = history(run_id, "val/fid_lenet")
    assert [s for s, _ in curve] == [15, 30, 45] and curve == history(reference_id, "val/fid_lenet")
    kept = resumed.metrics["train/kept_epoch"]
    assert kept == reference.metrics["train/kept_epoch"] == 1 + min(range(3), key=lambda i: curve[i][1])
    ours, theirs = final_weights(run_id, tmp_path / "a"), final_weights(reference_id, tmp_path / "b")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_prefect_retry_continues_from_the_checkpoint(
    prefect_server: str, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.models import flow_for

    original, crashed = _Checkpoint.save, []

    def crash_once_after_step_60(self: _Checkpoint, *args) -> None:
        original(self, *args)
        if self.trainer.steps == 60 and not crashed:
            crashed.append(self.last_step)
            raise OSError("simulated crash of the training process")

    monkeypatch.setattr(_Checkpoint, "save", crash_once_after_step_60)
    result = flow_for("gan")(GANConfig(**GAN, retries=1, fid_samples=200, lenet_epochs=1))
    assert crashed == [60]  # crashed right after the checkpoint at step 60
    run = tracking.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["train/steps"] == GAN["max_steps"]
    logged = [s for s, _ in history(result.run_id, "train/d_loss")]
    assert logged == [50, 100]  # the retry went on from step 60: 50 was not logged twice
    assert not run_checkpoint_path(result.run_id).parent.exists()  # removed once the run finished


def test_sigterm_checkpoints_marks_killed_and_resume_finishes_the_run(
    rlgen_cli, prefect_server: str, store: Path
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "RLGEN_HOME": str(store.parent)}
    settings = {**GAN, "max_steps": 120, "epochs": 4, "checkpoint_every": 0, "fid_samples": 200, "lenet_epochs": 1}
    args = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    rlgen = Path(sys.executable).with_name("rlgen")
    process = subprocess.Popen(
        [str(rlgen), "run", "gan", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while not _train_run_logged(store):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    (train,) = [r for r in _runs() if r.data.tags.get("rlgen.role") == "train"]
    assert train.info.status == "KILLED" and "checkpoint written to" in stderr
    stopped_at = load_checkpoint(run_checkpoint_path(train.info.run_id))["step"]
    assert 50 <= stopped_at < 120  # checkpoint_every=0: this checkpoint was written because of the signal

    rlgen_cli("run", "gan", "--resume", train.data.tags["mlflow.parentRunId"])  # the flow's run id works too
    run = tracking.get_run(train.info.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["rlgen.resumed"] == "1"
    assert run.data.metrics["train/steps"] == 120 and "eval/fid_lenet" in run.data.metrics
    assert [s for s, _ in history(run.info.run_id, "train/d_loss")] == [50, 100, 120]
    assert not run_checkpoint_path(train.info.run_id).parent.exists()


def test_resume_refuses_what_it_cannot_continue(store: Path) -> None:
    with tracking.run("rlgen", "finished", tags={"rlgen.family": "gan", "rlgen.role": "train"}) as finished_id:
        pass

    def refused(*args: str) -> str:
        result = CliRunner().invoke(app, ["run", *args], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        return " ".join(result.stderr.split())

    assert "already FINISHED" in refused("gan", "--resume", finished_id)
    assert "it is a gan run, not a dqn run" in refused("dqn", "--resume", finished_id)
    assert "there is no MLflow run 'nope'" in refused("gan", "--resume", "nope")
    assert "cannot be combined with --set" in refused("gan", "--resume", finished_id, "--set", "seed=2")
    with (
        pytest.raises(OSError),
        tracking.run("rlgen", "crashed", tags={"rlgen.family": "gan", "rlgen.role": "train"}) as crashed_id,
    ):
        raise OSError("crashed before its first checkpoint")
    assert "has no checkpoint at" in refused("gan", "--resume", crashed_id)
    run_checkpoint_path(crashed_id).parent.mkdir(parents=True)
    run_checkpoint_path(crashed_id).write_bytes(b"half a checkpoint")
    assert "is not a readable rlgen checkpoint" in refused("gan", "--resume", crashed_id)


def test_dqn_resumes_with_its_counters_replay_memory_and_history(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DQNConfig(
        total_steps=1200,
        learning_starts=200,
        train_every=50,
        gradient_steps=5,
        hidden=32,
        eval_every=400,
        val_episodes=2,
        eval_episodes=2,
        log_every=100,
        target_update_every=100,
        checkpoint_every=300,
        checkpoint_replay=True,
        n_step=1,  # one transition stored per step (n-step returns hold the last n - 1 back)
    )
    spec = steps.prepare(cfg)
    original = _Checkpoint.due

    def crash_at_step_700(self: _Checkpoint) -> bool:
        if self.trainer.steps == 700:
            raise OSError("simulated crash")
        return original(self)

    monkeypatch.setattr(_Checkpoint, "due", crash_at_step_700)
    with (
        pytest.raises(OSError),
        tracking.run("rlgen", "dqn", tags={"rlgen.family": "dqn", "rlgen.role": "train"}) as run_id,
    ):
        train_model(cfg, spec, run_id)
    saved = load_checkpoint(run_checkpoint_path(run_id))
    assert saved["step"] == 600 and len(saved["trainer"]["loop"]["memory"]["transitions"]["action"]) == 600

    monkeypatch.setattr(_Checkpoint, "due", original)
    with tracking.run("rlgen", "dqn", reopen=run_id):
        result = train_model(cfg, spec, run_id)
    assert result.steps == 1200
    assert [s for s, _ in history(run_id, "train/loss")] == list(range(200, 1201, 100))  # no gap, no duplicate
    assert [s for s, _ in history(run_id, "val/mean_return")] == [400, 800, 1200]
    episodes = [s for s, _ in history(run_id, "rl/episodic_return")]
    assert episodes == sorted(episodes) and episodes[-1] <= 1200


def test_nan_names_the_step_and_checkpoint_or_rolls_back_once(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = GANConfig(**{**GAN, "max_steps": 60})
    prepared = steps.prepare(cfg)
    original = models.gan.discriminator_step

    def poisoned_at_step_45(*args, **kwargs):  # call 45 returns a NaN loss, once
        calls.append(1)
        stats = original(*args, **kwargs)
        return stats | {"train/d_loss": torch.tensor(float("nan"))} if len(calls) == 45 else stats

    monkeypatch.setattr(models.gan, "discriminator_step", poisoned_at_step_45)
    calls: list[int] = []
    with pytest.raises(
        NonFiniteLoss, match=r"non-finite train/d_loss = nan at step 45.*last good checkpoint is step 40 at .*train\.pt"
    ):
        with tracking.run("rlgen", "nan") as run_id:
            train_model(cfg, prepared, run_id)
    assert tracking.get_run(run_id).info.status == "FAILED"

    calls.clear()
    with tracking.run("rlgen", "rollback") as run_id:
        result = train_model(cfg.model_copy(update={"nan_rollback": True}), prepared, run_id)
    assert result.steps == 60 and len(calls) == 45 + 20  # back to step 40, then on to 60
    note = tracking.get_run(run_id).data.tags["rlgen.rollback"]
    assert "step 45" in note and "rolled back to step 40" in note and "0.0001" in note  # lr 2e-4 halved


def _runs() -> list:
    client = tracking.client()
    experiment = client.get_experiment_by_name("rlgen")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _train_run_logged(store: Path) -> bool:
    if not (store / "mlflow.db").exists():
        return False
    return any(r.data.tags.get("rlgen.role") == "train" and "train/d_loss" in r.data.metrics for r in _runs())
