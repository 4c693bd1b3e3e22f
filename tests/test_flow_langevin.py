"""`rlgen run descriptor|generator|coop` end to end on the real offline MNIST split with tiny budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import model_files
from mlflow.tracking import MlflowClient
from PIL import Image
from test_flow_images import MNIST, sets

TINY = [
    "max_steps=6",
    "epochs=2",
    "batch_size=32",
    "fid_samples=200",
    "val_fid_samples=100",
    "lenet_epochs=1",
    "grid_size=16",
    f"data_dir={MNIST}",
]
LANGEVIN = {
    "descriptor": ["langevin_steps=3"],
    "generator": ["infer_steps=2", "recon_images=50"],
    "coop": ["langevin_steps=3", "infer_steps=1"],
}

pytestmark = pytest.mark.skipif(not MNIST.is_dir(), reason=f"the offline MNIST copy is not at {MNIST}")


def client_for(store: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


@pytest.mark.parametrize("family", list(LANGEVIN))
def test_langevin_flow_records_evaluates_exports_and_serves(rlgen, store: Path, tmp_path: Path, family: str) -> None:
    rlgen("run", family, *sets([*TINY, *LANGEVIN[family]]))
    client = client_for(store)
    (version,) = client.search_model_versions(f"name='{family}-mnist'")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["rlgen.family"] == family
    metrics = run.data.metrics
    assert metrics["train/steps"] == 6 and metrics["perf/images_per_sec"] > 0
    assert metrics["eval/fid_lenet"] > metrics["eval/fid_lenet_floor"] >= 0
    assert [m.step for m in client.get_metric_history(version.run_id, "val/fid_lenet")] == [6]  # the last batch
    assert metrics["val/fid_lenet"] > 0 and metrics["train/kept_epoch"] == 1
    assert 0 <= metrics["eval/class_entropy"] <= 2.31 and 0 <= metrics["eval/confident_fraction"] <= 1
    assert metrics["export/max_abs_diff"] <= 1e-5 and metrics["export/pt2_max_abs_diff"] <= 1e-5
    history = client.get_metric_history(version.run_id, "train/f_real" if family != "generator" else "train/recon_mse")
    assert [m.step for m in history] == [6]  # logged every 50 steps and at the last

    artifacts = {
        f.path
        for d in ("samples", "chains", "evaluation", "plots", "checkpoints")
        for f in client.list_artifacts(version.run_id, d)
    }
    assert {
        "samples/epoch_001.png",
        "evaluation/samples.png",
        "evaluation/report.json",
        "plots/learning_curve.png",
        f"checkpoints/{family}.pt",
    } <= artifacts
    assert {"MLmodel", "artifacts/model.pt", "artifacts/model.pt2"} <= model_files(client, f"{family}-mnist")
    if family in {"descriptor", "coop"}:
        assert "chains/epoch_001.png" in artifacts
        assert "negative" in run.data.tags["rlgen.metric_notes"]
        assert {"train/f_real", "train/f_synth", "train/gap_synth_minus_real"} <= set(metrics)
        chains = Image.open(client.download_artifacts(version.run_id, "chains/epoch_001.png", str(tmp_path)))
        assert chains.size == (3 * 30 + 2, 8 * 30 + 2)  # 8 chains x (first, middle, last step)
    if family == "generator":
        assert "evaluation/reconstructions.png" in artifacts and 0 < metrics["eval/recon_mse"] < 0.5
    if family == "coop":
        assert metrics["eval/revised_fid_lenet"] > 0 and "evaluation/revised_samples.png" in artifacts
        assert metrics["train/revision_mse"] > 0  # the revision moved the proposals

    if family == "descriptor":
        digit = np.asarray(
            Image.open(client.download_artifacts(version.run_id, "evaluation/samples.png", str(tmp_path)))
        )
        files = [tmp_path / "a.png", tmp_path / "b.png"]
        Image.fromarray(digit[2:30, 2:30]).save(files[0])  # the grid's first image
        Image.fromarray(np.zeros((56, 56), np.uint8)).save(files[1])  # resized to 28x28
        done = rlgen("score", "--model", "descriptor-mnist", *map(str, files))
        assert "a.png" in done.stdout and "b.png" in done.stdout
        refused = rlgen("sample", "--model", "descriptor-mnist", expect=2)
        assert "rlgen score" in refused.stderr
    else:
        grid = tmp_path / "grid.png"
        rlgen("sample", "--model", f"{family}-mnist", "--n", "16", "-o", str(grid))
        assert Image.open(grid).size == (4 * 30 + 2, 4 * 30 + 2)


def test_langevin_divergence_fails_the_run_naming_step_and_step_size(rlgen, store: Path) -> None:
    done = rlgen("run", "descriptor", *sets([*TINY, "langevin_steps=3", "langevin_step=1e4"]), expect=1)
    assert "training step 1" in done.stderr and "step size 10000" in done.stderr
    client = client_for(store)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="tags.`rlgen.role` = 'train'"
    )
    assert [r.info.status for r in runs] == ["FAILED"]


def test_score_names_a_missing_model_file(rlgen, store: Path, tmp_path: Path) -> None:
    missing = rlgen("score", "--model", str(tmp_path / "none.pt"), str(tmp_path / "x.png"), expect=2)
    assert missing.stderr.strip().endswith(f"error: no TorchScript file at {tmp_path / 'none.pt'}"), missing.stderr
    assert "Traceback" not in missing.stderr
