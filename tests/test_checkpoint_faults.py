"""Checkpoint faults on real files: a disk that fills up during training (a size-limited tmpfs, as root) leaves the
previous checkpoint valid and the run resumable with a clear error, and a checkpoint whose state no longer fits the
model the code builds is refused with one paragraph, not a state-dict traceback."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlgen import steps, tracking
from rlgen.checkpoints.io import load_checkpoint, run_checkpoint_path
from rlgen.checkpoints.stop import StopRequest
from rlgen.errors import CheckpointMismatch, CheckpointWriteError, UserError
from rlgen.families.dqn import DQNConfig
from rlgen.steps import train_model
from rlgen.training.driver import _Checkpoint, drive

TINY = {"total_steps": 600, "learning_starts": 100, "train_every": 50, "gradient_steps": 1, "hidden": 8,
        "eval_every": 0, "eval_episodes": 1, "val_episodes": 1, "log_every": 100, "checkpoint_every": 200}  # fmt: skip
TRAIN_TAGS = {"rlgen.family": "dqn", "rlgen.role": "train"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its file system has no space left; the file."""
    filler = folder / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_keeps_the_previous_checkpoint_and_the_run_resumes(
    store: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RLGEN_CHECKPOINT_DIR", str(small_disk))
    cfg = DQNConfig.model_validate(TINY)
    spec = steps.prepare(cfg)
    original, filled = _Checkpoint.due, []

    def fill_at_step_300(self: _Checkpoint) -> bool:
        if self.trainer.steps == 300 and not filled:
            filled.append(fill(small_disk))  # after the checkpoint of step 200, before that of step 400
        return original(self)

    monkeypatch.setattr(_Checkpoint, "due", fill_at_step_300)
    with (
        pytest.raises(CheckpointWriteError) as failed,
        tracking.run("rlgen", "dqn", tags=TRAIN_TAGS) as run_id,
    ):
        train_model(cfg, spec, run_id)
    message = str(failed.value)
    path = run_checkpoint_path(run_id)
    assert f"the checkpoint of step 400 could not be written to {path.parent} (no space left on device" in message
    assert f"the previous checkpoint (step 200, still valid, at {path}) is untouched" in message, message
    assert (
        f"free space there (or set RLGEN_CHECKPOINT_DIR to a roomier disk), then `rlgen run FAMILY --resume {run_id}`"
        in message
    )
    assert load_checkpoint(path)["step"] == 200
    # no half-written temporary file left: the checkpoint, the run's lock and its metric journal only
    assert sorted(p.name for p in path.parent.iterdir()) == [".lock", "metrics.jsonl", "train.pt"]

    filled[0].unlink()
    monkeypatch.setattr(_Checkpoint, "due", original)
    with tracking.run("rlgen", "dqn", reopen=run_id):
        assert train_model(cfg, spec, run_id).steps == 600
    logged = [m.step for m in tracking.client().get_metric_history(run_id, "train/loss")]
    assert logged == list(range(100, 601, 100))  # resumed from step 200: no gap, no duplicate


def test_a_checkpoint_that_no_longer_fits_the_model_is_refused(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DQNConfig.model_validate({**TINY, "total_steps": 200})
    spec = steps.prepare(cfg)
    with tracking.run("rlgen", "dqn", tags=TRAIN_TAGS) as run_id:
        monkeypatch.setattr(_Checkpoint, "due", lambda self: self.trainer.steps == 200)
        train_model(cfg, spec, run_id)
    path = run_checkpoint_path(run_id)
    assert path.is_file()
    changed = cfg.model_copy(update={"hidden": 16})  # as if the code now built a wider network from this config
    trainer, _ = steps.build_trainer(changed, spec)
    with pytest.raises(CheckpointMismatch) as refused:
        drive(trainer, run_id, checkpoint_every=200, stop=StopRequest())
    message = str(refused.value)
    assert isinstance(refused.value, UserError)  # the CLI shows it as one paragraph and exits 2
    assert f"cannot resume run {run_id} from its checkpoint at {path} (step 200)" in message, message
    assert (
        "its state does not match the model this code builds "
        "(RuntimeError: Error(s) in loading state_dict for QNetwork: size mismatch" in message
    )
    assert "finish the run with the rlgen version that wrote it, or start a new run" in message
    assert "\n" not in message and os.path.getsize(path) > 0
