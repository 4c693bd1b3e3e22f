"""`rlgen run vae|gan` end to end on the real offline MNIST split with tiny budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import model_files
from mlflow.tracking import MlflowClient
from PIL import Image

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "raw"
TINY = ["max_steps=12", "epochs=2", "batch_size=64", "fid_samples=300", "lenet_epochs=1", f"data_dir={MNIST}"]
VARIANTS = [
    ("vae", "vae", ["iw_samples=5", "iw_images=20"]),
    ("vae", "conv-vae", ["iw_samples=5", "iw_images=20"]),
    ("vae", "cvae", ["iw_samples=5", "iw_images=20"]),
    ("gan", "dcgan", ["grid_size=16"]),
    ("gan", "cgan", ["grid_size=16"]),
]

pytestmark = pytest.mark.skipif(not MNIST.is_dir(), reason=f"the offline MNIST copy is not at {MNIST}")


def sets(pairs: list[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.mark.parametrize(("family", "variant", "extra"), VARIANTS, ids=[v[1] for v in VARIANTS])
def test_image_flow_records_evaluates_exports_and_samples(
    rlgen, store: Path, tmp_path: Path, family: str, variant: str, extra: list[str]
) -> None:
    rlgen("run", family, *sets([*TINY, f"variant={variant}", *extra]))
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    (version,) = client.search_model_versions(f"name='{variant}-mnist'")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED" and run.data.params["variant"] == variant
    metrics = run.data.metrics
    assert metrics["train/steps"] == 12 and metrics["perf/images_per_sec"] > 0
    assert metrics["eval/fid_lenet"] > metrics["eval/fid_lenet_floor"] >= 0
    assert 0 <= metrics["eval/class_entropy"] <= 2.31  # at most log(10)
    assert metrics["export/max_abs_diff"] <= 1e-5 and metrics["export/pt2_max_abs_diff"] <= 1e-5
    if family == "vae":
        assert 50 < metrics["eval/iw_nll"] <= metrics["eval/neg_elbo"] + 1.0 < 800
    if variant in {"cvae", "cgan"}:
        assert 0 <= metrics["eval/cond_accuracy"] <= 1 and "eval/cond_accuracy_9" in metrics

    artifacts = {
        f.path
        for d in ("samples", "evaluation", "plots", "checkpoints")
        for f in client.list_artifacts(version.run_id, d)
    }
    assert {
        "samples/epoch_001.png",
        "evaluation/samples.png",
        "evaluation/interpolations.png",
        "evaluation/report.json",
        "plots/learning_curve.png",
        f"checkpoints/{family}.pt",
    } <= artifacts
    assert {"MLmodel", "artifacts/model.pt", "artifacts/model.pt2", "input_example.json"} <= model_files(
        client, f"{variant}-mnist"
    )
    if family == "vae":
        assert "evaluation/reconstructions.png" in artifacts

    parent_id = run.data.tags["mlflow.parentRunId"]
    parent = client.get_run(parent_id)
    assert parent.data.params["data.split.rule"] == "resplit_test"
    assert parent.data.params["data.split.sizes.train"] == "8000"
    assert "data/kurtosis_scale1" in parent.data.metrics
    evaluators = client.search_model_versions("name='lenet-mnist'")
    assert len(evaluators) == 1  # trained once per prepared dataset

    label = ["--label", "3"] if variant in {"cvae", "cgan"} else []
    grid = tmp_path / "grid.png"
    rlgen("sample", "--model", f"{variant}-mnist", "--n", "16", *label, "-o", str(grid))
    assert Image.open(grid).size == (4 * 30 + 2, 4 * 30 + 2)


def test_evaluator_is_reused_across_runs(rlgen, store: Path) -> None:
    for variant in ("vae", "cvae"):
        rlgen("run", "vae", *sets([*TINY, f"variant={variant}", "iw_samples=2", "iw_images=10"]))
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    assert len(client.search_model_versions("name='lenet-mnist'")) == 1


def test_missing_data_directory_is_a_clear_error(rlgen, store: Path, tmp_path: Path) -> None:
    done = rlgen("run", "vae", "--set", f"data_dir={tmp_path / 'nowhere'}", expect=2)
    assert "nowhere" in done.stderr


def test_a_non_finite_loss_fails_the_run_naming_model_and_step(rlgen, store: Path) -> None:
    done = rlgen("run", "vae", *sets([*TINY, "lr=1e30", "iw_samples=2", "iw_images=10"]), expect=1)
    assert "vae-mnist: non-finite train/loss" in done.stderr and "at step 2" in done.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="tags.`rlgen.role` = 'train'"
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not client.search_model_versions("name='vae-mnist'")  # nothing registered
