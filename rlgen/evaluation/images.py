"""What every image model is judged by: the LeNet evaluator trained on the same split, FID-LeNet with its floors,
the class histogram of samples and, for conditional models, per-class accuracy; and seeded sample grids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from models import fid, lenet
from models.common import seed_everything
from models.image_trainer import ImageTrainer, Selection
from rlgen.checkpoints.io import load_checkpoint, save_checkpoint
from rlgen.checkpoints.stop import StopRequest
from rlgen.config.image import ImageConfig
from rlgen.data.idx import dataset_spec
from rlgen.data.images import PreparedData, load_prepared
from rlgen.plots import confusion_matrix_plot, save_grid
from rlgen.settings import data_dir
from rlgen.tracking.artifacts import download, log_artifact, temp_dir
from rlgen.tracking.lifecycle import prefect_tags
from rlgen.tracking.registry import model_versions, register_model
from rlgen.tracking.runs import get_run, log_metrics, run
from rlgen.training.device import training_device
from rlgen.training.driver import drive

Generate = Callable[[Tensor, Tensor], Tensor]  # (z, y) -> images (B, 1, 28, 28) in [0, 1]
EVALUATOR_CHECKPOINT = "checkpoints/lenet.pt"


class EvaluatorRef(NamedTuple):
    run_id: str
    checkpoint: str  # artifact path within the run
    test_accuracy: float
    reused: bool


def n_classes(cfg: ImageConfig) -> int:
    """Classes of the configured dataset."""
    return dataset_spec(cfg.dataset).num_classes


# --------------------------------------------------------------------------- the LeNet evaluator


class LeNetTrainer(ImageTrainer):
    """The evaluator's training: cross-entropy on the train split, batch 128, Adam 1e-3."""

    def __init__(self, model: lenet.LeNet, images: Tensor, labels: Tensor, epochs: int) -> None:
        super().__init__(images, labels, 128, epochs, None)
        self.name, self.model = "lenet", model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        return lenet.train_step(self.model, self.optimizer, x, y)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}


def evaluator_name(cfg: ImageConfig) -> str:
    """Registered name of the evaluator for a dataset."""
    return f"lenet-{cfg.dataset}"


def ensure_evaluator(cfg: ImageConfig, prepared: PreparedData, parent_id: str) -> EvaluatorRef:
    """The LeNet trained on this exact prepared dataset: reused from the registry, else from the data folder's cache
    (a new store on a machine that has trained it), else trained once."""
    name = evaluator_name(cfg)
    for version in model_versions(name):
        if version.tags.get("content_hash") == prepared.content_hash and version.run_id is not None:
            accuracy = get_run(version.run_id).data.metrics.get("eval/test_accuracy", float("nan"))
            return EvaluatorRef(version.run_id, EVALUATOR_CHECKPOINT, accuracy, True)
    cache = (
        data_dir() / "evaluators" / f"{name}-{prepared.content_hash[:16]}-epochs{cfg.lenet_epochs}-seed{cfg.seed}.pt"
    )
    tags = {"rlgen.role": "evaluator", **prefect_tags()}
    with run(cfg.experiment, f"{name}-{prepared.content_hash[:8]}", tags=tags, parent_id=parent_id) as run_id:
        if cache.is_file():
            trained = load_checkpoint(cache)
        else:
            trained = train_evaluator(cfg, prepared, run_id)
            save_checkpoint(cache, trained)
        accuracy = record_evaluator(cfg, trained, run_id)
        register_model(run_id, "checkpoints", name, tags={"content_hash": prepared.content_hash, "family": "lenet"})
    return EvaluatorRef(run_id, EVALUATOR_CHECKPOINT, accuracy, False)


def train_evaluator(cfg: ImageConfig, prepared: PreparedData, run_id: str) -> dict[str, Any]:
    """Train LeNet on the train split (metrics on run `run_id`); its weights, test accuracy and confusion matrix."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data = load_prepared(prepared.path, device)
    model = lenet.LeNet(n_classes(cfg)).to(device)
    trainer = LeNetTrainer(model, data["train_images"], data["train_labels"], cfg.lenet_epochs)
    drive(trainer, run_id, checkpoint_every=None, stop=StopRequest(), device=device)
    predicted = lenet.predict_logits(model, data["test_images"].float() / 255.0).argmax(1)
    accuracy = float((predicted == data["test_labels"]).float().mean())
    matrix = lenet.confusion_matrix(predicted.cpu(), data["test_labels"].cpu(), n_classes(cfg))
    return {"config": cfg.model_dump(mode="json"), "model": model.state_dict(), "accuracy": accuracy, "matrix": matrix}


def record_evaluator(cfg: ImageConfig, trained: dict[str, Any], run_id: str) -> float:
    """The evaluator's test accuracy, confusion matrix and checkpoint on its run; the accuracy."""
    accuracy = float(trained["accuracy"])
    log_metrics(run_id, {"eval/test_accuracy": accuracy})
    with temp_dir() as tmp:
        title = f"LeNet evaluator, test accuracy {accuracy:.2%}"
        log_artifact(
            run_id, confusion_matrix_plot(trained["matrix"], Path(tmp) / "confusion_matrix.png", title), "evaluation"
        )
        checkpoint = {"config": trained["config"], "model": trained["model"]}
        log_artifact(run_id, save_checkpoint(Path(tmp) / "lenet.pt", checkpoint), "checkpoints")
    return accuracy


def load_evaluator(ref: EvaluatorRef, cfg: ImageConfig, device: torch.device) -> lenet.LeNet:
    """The evaluator LeNet, in eval mode, on `device`."""
    with temp_dir() as tmp:
        state = load_checkpoint(download(ref.run_id, ref.checkpoint, Path(tmp)), device)
    model = lenet.LeNet(n_classes(cfg)).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


# --------------------------------------------------------------------------- sample-based evaluation


@torch.no_grad()
def generate_batched(
    generate: Generate, latent_dim: int, labels: Tensor, device: torch.device, seed: int, batch: int = 1000
) -> Tensor:
    """Images for every label in `labels`, generated in batches from seeded noise."""
    rng = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in range(0, len(labels), batch):
        y = labels[start : start + batch].to(device)
        z = torch.randn(len(y), latent_dim, generator=rng, device=device)
        out.append(generate(z, y))
    return torch.cat(out)  # (N, 1, 28, 28) in [0, 1]


def prior_samples(cfg: ImageConfig, generate: Generate, latent_dim: int, n: int, device: torch.device) -> Tensor:
    """`n` images from noise seeded by the config, labels cycling through the classes: what FID-LeNet judges."""
    labels = torch.arange(n, device=device) % n_classes(cfg)
    return generate_batched(generate, latent_dim, labels, device, seed=cfg.seed)


def selection(
    cfg: ImageConfig, prepared: PreparedData, evaluator: EvaluatorRef | None, device: torch.device
) -> Selection | None:
    """The val/fid_lenet curve (the evaluator against up to `val_fid_samples` validation images) and which weights
    to keep; None when the curve is off or there is no evaluator (training outside the flow keeps the last)."""
    if cfg.val_fid_every == 0 or evaluator is None:
        return None
    real = load_prepared(prepared.path, device)["val_images"][: cfg.val_fid_samples].float() / 255.0
    judge = fid.FIDJudge(load_evaluator(evaluator, cfg, device), real)
    return Selection(judge, cfg.val_fid_every, cfg.val_fid_samples, cfg.seed, keep_best=cfg.keep == "best_val_fid")


def evaluate_samples(
    cfg: ImageConfig,
    prepared: PreparedData,
    evaluator: EvaluatorRef,
    generate: Generate,
    latent_dim: int,
    device: torch.device,
) -> dict[str, float]:
    """FID-LeNet against the held-out test images (with its real-vs-real floor), the class histogram's entropy
    and confidence of `fid_samples` samples, and per-class accuracy if the model is conditional."""
    classes = n_classes(cfg)
    classifier = load_evaluator(evaluator, cfg, device)
    data = load_prepared(prepared.path, device)
    real = data["test_images"].float() / 255.0  # the test split, here only: selection uses the validation split
    labels = torch.arange(cfg.fid_samples, device=device) % classes
    fake = prior_samples(cfg, generate, latent_dim, cfg.fid_samples, device)

    real_features = fid.extract_features(classifier, real)
    fake_features = fid.extract_features(classifier, fake)
    half = len(real_features) // 2
    probs = torch.softmax(lenet.predict_logits(classifier, fake), dim=1).cpu()  # (N, C)
    histogram = fid.class_histogram(probs.log())
    train_features = fid.extract_features(classifier, data["train_images"][: cfg.fid_samples].float() / 255.0)
    metrics = {
        "eval/fid_lenet": fid.fid_from_features(fake_features, real_features),
        "eval/fid_lenet_floor": fid.fid_from_features(real_features[:half], real_features[half:]),
        # the same sizes as the model's comparison (up to fid_samples real training images against the
        # test set): the floor above is inflated by comparing two small halves
        "eval/fid_lenet_train_test": fid.fid_from_features(train_features, real_features),
        "eval/class_entropy": fid.entropy(histogram),
        "eval/confident_fraction": float((probs.max(dim=1).values > 0.9).float().mean()),
        "eval/evaluator_accuracy": evaluator.test_accuracy,
    }
    metrics.update({f"eval/class_share_{c}": float(histogram[c]) for c in range(classes)})
    if cfg.conditional:
        hits = probs.argmax(dim=1) == labels.cpu()
        per_class = [float(hits[labels.cpu() == c].float().mean()) for c in range(classes)]
        metrics.update({f"eval/cond_accuracy_{c}": a for c, a in enumerate(per_class)})
        metrics["eval/cond_accuracy"] = sum(per_class) / classes
    return metrics


def grid_images(
    generate: Generate, latent_dim: int, conditional: bool, device: torch.device, seed: int, n: int = 100
) -> Tensor:
    """Seeded samples for a 10-column grid; conditional models get one row per class."""
    labels = (
        torch.arange(n, device=device) // 10 % 10 if conditional else torch.zeros(n, dtype=torch.long, device=device)
    )
    return generate_batched(generate, latent_dim, labels, device, seed)


def sample_grid(
    generate: Generate, latent_dim: int, conditional: bool, path: Path, device: torch.device, seed: int, n: int = 100
) -> Path:
    """`grid_images` saved as a PNG."""
    return save_grid(grid_images(generate, latent_dim, conditional, device, seed, n), path, nrow=10)


def log_sample_grid(
    run_id: str,
    generate: Generate,
    latent_dim: int,
    conditional: bool,
    device: torch.device,
    seed: int,
    name: str = "samples.png",
) -> None:
    """`sample_grid` as evaluation/<name> of a run."""
    with temp_dir() as tmp:
        log_artifact(
            run_id, sample_grid(generate, latent_dim, conditional, Path(tmp) / name, device, seed), "evaluation"
        )


def generator_inputs(cfg: ImageConfig, latent_dim: int, n: int = 32) -> tuple[Tensor, Tensor]:
    """Seeded example inputs (z, y) of a (z, y) -> images module, for the parity check."""
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
    return z, torch.arange(n) % n_classes(cfg)


def image_metadata(cfg: ImageConfig, **extra: object) -> dict[str, object]:
    """What `rlgen sample` and `rlgen score` read from an exported image module besides the module itself."""
    variant = getattr(cfg, "variant", cfg.family)
    return {
        "variant": variant,
        "dataset": cfg.dataset,
        "conditional": cfg.conditional,
        "n_classes": n_classes(cfg),
        **extra,
    }
