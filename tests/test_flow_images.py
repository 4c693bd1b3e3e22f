"""`rlgen run vae|gan` end to end on the real offline MNIST split with tiny budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import model_files
from mlflow.tracking import MlflowClient
from PIL import Image

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "raw"
TINY = [
    "max_steps=12",
    "epochs=2",
    "batch_size=64",
    "fid_samples=300",
    "val_fid_samples=100",
    "lenet_epochs=1",
    f"data_dir={MNIST}",
]
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
    assert [m.step for m in client.get_metric_history(version.run_id, "val/fid_lenet")] == [12]  # the last batch
    assert metrics["val/fid_lenet"] > 0 and metrics["train/kept_epoch"] == 1
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
    nowhere = tmp_path / "nowhere"
    done = rlgen("run", "vae", "--set", f"data_dir={nowhere}", expect=2)
    (message,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]  # one paragraph
    assert message.startswith(f"error: No MNIST IDX files found in {nowhere}, "), message  # what is missing, where
    assert f"({nowhere} does not exist)" in message and "t10k-images-idx3-ubyte[.gz]" in message
    assert "Put them in a folder and pass --set data_dir=<folder>, or leave data_dir unset" in message  # the fix
    assert "Traceback" not in done.stderr
    if (store / "mlflow.db").exists():  # no MLflow run was started, so none is left RUNNING
        client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_a_non_finite_loss_fails_the_run_naming_model_and_step(rlgen, store: Path) -> None:
    done = rlgen("run", "vae", *sets([*TINY, "lr=1e30", "iw_samples=2", "iw_images=10"]), expect=1)
    assert "vae-mnist: non-finite train/loss" in done.stderr and "at step 2" in done.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="tags.`rlgen.role` = 'train'"
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not client.search_model_versions("name='vae-mnist'")  # nothing registered


def image_families() -> list[str]:
    from rlgen.domains import IMAGES
    from rlgen.registry import FAMILIES

    return [name for name, family in FAMILIES.items() if family.impl().DOMAIN is IMAGES]


@pytest.mark.parametrize("family", image_families())
def test_every_image_trainer_scores_the_validation_split_without_disturbing_training(store: Path, family: str) -> None:
    """Given the flow's evaluator, each image family's trainer (every registered one) scores val/fid_lenet on the
    validation split (never the test split); drawing the samples leaves weights, buffers and train mode as they were."""
    import torch

    from rlgen import steps, tracking
    from rlgen.data.images import load_prepared
    from rlgen.registry import FAMILIES

    cfg = FAMILIES[family].config.model_validate({"data_dir": str(MNIST), "lenet_epochs": 1, "val_fid_samples": 64})
    assert (cfg.val_fid_every, cfg.keep) == (1, "best_val_fid")  # the defaults: a curve every epoch, the best kept
    prepared = steps.prepare(cfg)
    with tracking.run("rlgen", "evaluator") as parent_id:
        evaluator = steps.context(cfg, prepared, parent_id)
    trainer, _ = steps.build_trainer(cfg, prepared, evaluator)
    selection = trainer.selection  # type: ignore[attr-defined]
    assert selection is not None and (selection.every, selection.samples, selection.keep_best) == (1, 64, True)
    data = load_prepared(prepared.path)
    val = data["val_images"][:64].float() / 255.0
    assert selection.judge(val) < 1e-6  # the real statistics are the validation images' own ...
    assert selection.judge(data["test_images"][:64].float() / 255.0) > 0  # ... not the test split's

    before = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in trainer.modules().items()}
    samples = trainer.prior_samples(16)  # type: ignore[attr-defined]
    assert samples.shape == (16, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    for key, module in trainer.modules().items():
        assert module.training, key
        for name, tensor in module.state_dict().items():
            assert torch.equal(tensor, before[key][name]), (key, name)

    unscored, _ = steps.build_trainer(cfg, prepared)  # outside a flow (no evaluator): no curve, the last weights
    assert unscored.selection is None  # type: ignore[attr-defined]


def test_val_fid_curve_is_logged_every_epoch_and_the_registered_weights_are_its_best(rlgen, store: Path) -> None:
    """A 3-epoch DCGAN: val/fid_lenet after each epoch, finite; the registered checkpoint holds the weights of the
    curve's minimum (train/kept_epoch is its argmin, and those weights score that minimum again)."""
    import math

    import torch

    from models.image_trainer import Selection
    from rlgen import steps, tracking
    from rlgen.checkpoints.io import load_checkpoint
    from rlgen.evaluation.images import EVALUATOR_CHECKPOINT, EvaluatorRef
    from rlgen.families.gan import GANConfig

    settings = {
        "data_dir": str(MNIST),
        "variant": "dcgan",
        "epochs": 3,
        "val_fraction": 0.45,  # 4,500 validation, 4,000 test and 1,500 training images: epochs of 15 batches
        "test_fraction": 0.4,
        "batch_size": 100,
        "fid_samples": 300,
        "lenet_epochs": 1,
        "grid_size": 16,
        "val_fid_samples": 300,
    }
    rlgen("run", "gan", *sets([f"{k}={v}" for k, v in settings.items()]))
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    (version,) = client.search_model_versions("name='dcgan-mnist'")
    curve = sorted((m.step, m.value) for m in client.get_metric_history(version.run_id, "val/fid_lenet"))
    assert [step for step, _ in curve] == [15, 30, 45] and all(math.isfinite(v) and v > 0 for _, v in curve)
    metrics = client.get_run(version.run_id).data.metrics
    best = min(range(3), key=lambda i: curve[i][1])
    assert metrics["train/kept_epoch"] == best + 1 and metrics["val/fid_lenet_best"] == curve[best][1]

    cfg = GANConfig(**settings)
    prepared = steps.prepare(cfg)
    (lenet,) = client.search_model_versions("name='lenet-mnist'")
    evaluator = EvaluatorRef(lenet.run_id, EVALUATOR_CHECKPOINT, float("nan"), True)
    trainer, _ = steps.build_trainer(cfg, prepared, evaluator)
    kept = load_checkpoint(tracking.download(version.run_id, "checkpoints/gan.pt", store.parent / "kept"))
    for name, module in trainer.modules().items():
        module.load_state_dict(kept["modules"][name])
    selection = trainer.selection  # type: ignore[attr-defined]
    assert isinstance(selection, Selection)
    torch.manual_seed(selection.seed)
    rescored = selection.judge(trainer.prior_samples(selection.samples))  # type: ignore[attr-defined]
    assert rescored == pytest.approx(curve[best][1], rel=1e-6)
