"""Tasks every image model shares: data prep, the data report, the LeNet evaluator, sample-based
evaluation (FID-LeNet, class histogram, conditional accuracy), grids, TorchScript export, registry.

Plain functions first, thin Prefect tasks at the bottom.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image
from prefect import task
from torch import Tensor
from torchvision.utils import make_grid

from models import fid, lenet
from models.common import autocast, compile_modules, seed_everything
from models.image_fit import ImageFitResult, fit_images, total_steps
from rlgen.config import ImageConfig
from rlgen.settings import data_dir
from tasks import promotion, tracking
from tasks.checkpoint import TrainingSession, load_checkpoint, save_checkpoint
from tasks.export import check_parity, export_checked_programs, script_module
from tasks.image_data import (
    PreparedData,
    data_report,
    dataset_spec,
    load_prepared,
    prepare,
    retry_only_downloads,
)
from tasks.plots import confusion_matrix_plot, learning_curve
from tasks.progress import MetricRecorder, fan_out, progress_bar
from tasks.runs import prefect_tags, training_device

log = logging.getLogger(__name__)

Generate = Callable[[Tensor, Tensor], Tensor]  # (z, y) -> images (B, 1, 28, 28) in [0, 1]
EXPORT_DIR = "model"
EXPORT_FILE = "model.pt"
PROGRAM_FILE = "model.pt2"  # the same forward as a torch.export program


class EvaluatorRef(NamedTuple):
    run_id: str
    checkpoint: str  # artifact path within the run
    test_accuracy: float
    reused: bool


def n_classes(cfg: ImageConfig) -> int:
    """Classes of the configured dataset."""
    return dataset_spec(cfg.dataset).num_classes


# --------------------------------------------------------------------------- data


def prepare_data(cfg: ImageConfig) -> PreparedData:
    """Read (or download), verify, split and cache the dataset; validates the device first."""
    training_device(cfg)
    source = Path(cfg.data_dir).expanduser() if cfg.data_dir else None
    return prepare(
        cfg.dataset,
        source,
        data_dir() / "prepared",
        split_seed=cfg.split_seed,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        download=source is None,
    )


def report_data(prepared: PreparedData, run_id: str) -> dict[str, float]:
    """Log the provenance as params and the natural-image-statistics report (figure and metrics)."""
    tracking.log_params(run_id, {"data": prepared.provenance})
    data = load_prepared(prepared.path)
    with tracking.temp_dir() as tmp:
        metrics = data_report(data["train_images"], Path(tmp) / "data_report.png", f"{prepared.provenance['dataset']} train split")
        tracking.log_artifact(run_id, Path(tmp) / "data_report.png", "data")
    tracking.log_metrics(run_id, metrics)
    return metrics


# --------------------------------------------------------------------------- the LeNet evaluator


def evaluator_name(cfg: ImageConfig) -> str:
    """Registered name of the evaluator for a dataset."""
    return f"lenet-{cfg.dataset}"


def ensure_evaluator(cfg: ImageConfig, prepared: PreparedData, parent_id: str) -> EvaluatorRef:
    """The LeNet trained on this exact prepared dataset: reused from the registry, else trained once."""
    name = evaluator_name(cfg)
    for version in tracking.model_versions(name):
        if version.tags.get("content_hash") == prepared.content_hash:
            run = tracking.get_run(version.run_id)
            return EvaluatorRef(version.run_id, "checkpoints/lenet.pt", run.data.metrics.get("eval/test_accuracy", float("nan")), True)
    with tracking.run(cfg.experiment, f"{name}-{prepared.content_hash[:8]}", tags={"rlgen.role": "evaluator", **prefect_tags()}, parent_id=parent_id) as run_id:
        accuracy = train_evaluator(cfg, prepared, run_id)
        tracking.register_model(run_id, "checkpoints", name, tags={"content_hash": prepared.content_hash, "family": "lenet"})
    return EvaluatorRef(run_id, "checkpoints/lenet.pt", accuracy, False)


def train_evaluator(cfg: ImageConfig, prepared: PreparedData, run_id: str) -> float:
    """Train LeNet on the train split; log test accuracy, the confusion matrix and the checkpoint."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data = load_prepared(prepared.path, device)
    model = lenet.LeNet(n_classes(cfg)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    logger = tracking.MetricLogger(run_id)
    fit_images(lambda x, y: lenet.train_step(model, optimizer, x, y), data["train_images"], data["train_labels"], 128, cfg.lenet_epochs, logger)
    logger.close()
    test_x = data["test_images"].float() / 255.0
    logits = lenet.predict_logits(model, test_x)
    accuracy = float((logits.argmax(1) == data["test_labels"]).float().mean())
    tracking.log_metrics(run_id, {"eval/test_accuracy": accuracy})
    with tracking.temp_dir() as tmp:
        matrix = lenet.confusion_matrix(logits.argmax(1).cpu(), data["test_labels"].cpu(), n_classes(cfg))
        plot = confusion_matrix_plot(matrix, Path(tmp) / "confusion_matrix.png", f"LeNet evaluator, test accuracy {accuracy:.2%}")
        tracking.log_artifact(run_id, plot, "evaluation")
        ckpt = save_checkpoint(Path(tmp) / "lenet.pt", {"config": cfg.model_dump(mode="json"), "model": model.state_dict()})
        tracking.log_artifact(run_id, ckpt, "checkpoints")
    return accuracy


def load_evaluator(ref: EvaluatorRef, cfg: ImageConfig, device: torch.device) -> lenet.LeNet:
    """The evaluator LeNet, in eval mode, on `device`."""
    with tracking.temp_dir() as tmp:
        state = load_checkpoint(tracking.download(ref.run_id, ref.checkpoint, Path(tmp)), device)
    model = lenet.LeNet(n_classes(cfg)).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


# --------------------------------------------------------------------------- sample-based evaluation


@torch.no_grad()
def generate_batched(generate: Generate, latent_dim: int, labels: Tensor, device: torch.device, seed: int, batch: int = 1000) -> Tensor:
    """Images for every label in `labels`, generated in batches from seeded noise."""
    rng = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in range(0, len(labels), batch):
        y = labels[start : start + batch].to(device)
        z = torch.randn(len(y), latent_dim, generator=rng, device=device)
        out.append(generate(z, y))
    return torch.cat(out)  # (N, 1, 28, 28) in [0, 1]


def evaluate_samples(
    cfg: ImageConfig, prepared: PreparedData, evaluator: EvaluatorRef, generate: Generate, latent_dim: int, conditional: bool, device: torch.device
) -> dict[str, float]:
    """FID-LeNet against the held-out test images (with its real-vs-real floor), the class
    histogram's entropy and confidence of `fid_samples` samples, and per-class accuracy if conditional."""
    classes = n_classes(cfg)
    classifier = load_evaluator(evaluator, cfg, device)
    data = load_prepared(prepared.path, device)
    real = data["test_images"].float() / 255.0
    labels = torch.arange(cfg.fid_samples, device=device) % classes
    fake = generate_batched(generate, latent_dim, labels, device, seed=cfg.seed)

    real_features = fid.extract_features(classifier, real)
    fake_features = fid.extract_features(classifier, fake)
    half = len(real_features) // 2
    probs = torch.softmax(lenet.predict_logits(classifier, fake), dim=1).cpu()  # (N, C)
    histogram = fid.class_histogram(probs.log())
    metrics = {
        "eval/fid_lenet": fid.fid_from_features(fake_features, real_features),
        "eval/fid_lenet_floor": fid.fid_from_features(real_features[:half], real_features[half:]),
        # the same sizes as the model's comparison (up to fid_samples real training images against the
        # test set): the floor above is inflated by comparing two small halves
        "eval/fid_lenet_train_test": fid.fid_from_features(
            fid.extract_features(classifier, data["train_images"][: cfg.fid_samples].float() / 255.0), real_features
        ),
        "eval/class_entropy": fid.entropy(histogram),
        "eval/confident_fraction": float((probs.max(dim=1).values > 0.9).float().mean()),
        "eval/evaluator_accuracy": evaluator.test_accuracy,
    }
    metrics.update({f"eval/class_share_{c}": float(histogram[c]) for c in range(classes)})
    if conditional:
        hits = probs.argmax(dim=1) == labels.cpu()
        per_class = [float(hits[labels.cpu() == c].float().mean()) for c in range(classes)]
        metrics.update({f"eval/cond_accuracy_{c}": a for c, a in enumerate(per_class)})
        metrics["eval/cond_accuracy"] = sum(per_class) / classes
    return metrics


def sample_grid(generate: Generate, latent_dim: int, conditional: bool, path: Path, device: torch.device, seed: int, n: int = 100) -> Path:
    """A grid of samples; conditional models get one row per class (10 x 10)."""
    labels = torch.arange(n, device=device) // 10 % 10 if conditional else torch.zeros(n, dtype=torch.long, device=device)
    images = generate_batched(generate, latent_dim, labels, device, seed)
    return save_grid(images, path, nrow=10)


def save_grid(images: Tensor, path: Path, nrow: int = 10) -> Path:
    """A PNG grid of images (B, C, H, W) in [0, 1]: greyscale for one channel, fast zlib level.

    About 4x faster than torchvision's `save_image` (always RGB, default compression) on a 10 x 10 MNIST grid;
    the per-epoch grids sit inside the training loop's clock.
    """
    grid = make_grid(images.detach().cpu(), nrow=nrow, padding=2)  # (3, H', W'): make_grid repeats one channel
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    array = pixels[0].numpy() if images.shape[1] == 1 else pixels.permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path, compress_level=1)
    return path


# --------------------------------------------------------------------------- training scaffold


class ImageTrainOutput(NamedTuple):
    run_id: str
    checkpoint: str  # artifact path within the run
    steps: int
    epochs: int
    seconds: float
    images_per_sec: float


def run_fit(
    cfg: ImageConfig,
    run_id: str,
    data: dict[str, Tensor],
    step_fn: Callable[[Tensor, Tensor], dict[str, Tensor]],
    on_epoch_end: Callable[[int, int, Callable[[int, dict[str, float]], None]], None],
    shown: tuple[str, ...],
    objects: dict[str, Any],
) -> tuple[ImageFitResult, MetricRecorder, float]:
    """Train with a progress bar, metrics batched into MLflow and kept in memory for the plots.

    `objects` (models, optimizers, training buffers) go into a checkpoint every `checkpoint_every` steps
    and when the user stops the run; a run that has a checkpoint (a retry, or --resume) goes on from it.
    """
    session = TrainingSession(cfg, run_id, objects)
    budget = total_steps(data["train_images"].shape[0], cfg.batch_size, cfg.epochs, cfg.max_steps)
    if cfg.compile:
        compile_modules(*(m for m in objects.values() if isinstance(m, torch.nn.Module)))
    started = time.perf_counter()
    with autocast(data["train_images"].device, cfg.amp), progress_bar(budget, cfg.registered_name, shown) as bar:
        on_metrics = fan_out(session.recorder, session.logger, bar)

        def fit(start: dict | None) -> ImageFitResult:
            return fit_images(
                step_fn, data["train_images"], data["train_labels"], cfg.batch_size, cfg.epochs, on_metrics,
                on_epoch_end=lambda epoch, step: on_epoch_end(epoch, step, on_metrics), max_steps=cfg.max_steps,
                after_step=session.after_step, start=start,
            )

        def done(result: ImageFitResult) -> tuple[int, dict]:
            return result.steps, {"step": result.steps, "epoch": result.epochs + 1, "batch": 0, "order": torch.zeros(0)}

        result = session.run(fit, done, "lower the learning rate or check the data")
    seconds = time.perf_counter() - started
    tracking.log_metrics(run_id, {
        "train/steps": result.steps, "train/epochs": result.epochs, "train/seconds": seconds,
        "perf/images_per_sec": result.images_seen / seconds,
    }, step=result.steps)
    return result, session.recorder, seconds


def finish_training(
    cfg: ImageConfig, run_id: str, state: dict, result: ImageFitResult, seconds: float, curves: dict[str, dict[str, list]], checkpoint_name: str
) -> ImageTrainOutput:
    """Log the checkpoint and the learning curves; return the training record."""
    with tracking.temp_dir() as tmp:
        path = save_checkpoint(Path(tmp) / checkpoint_name, {"config": cfg.model_dump(mode="json"), "step": result.steps, **state})
        tracking.log_artifact(run_id, path, "checkpoints")
        curve = learning_curve(curves, Path(tmp) / "learning_curve.png", f"{cfg.registered_name}, seed {cfg.seed}", xlabel="batch")
        tracking.log_artifact(run_id, curve, "plots")
    return ImageTrainOutput(run_id, f"checkpoints/{checkpoint_name}", result.steps, result.epochs, seconds, result.images_seen / seconds)


def log_image(run_id: str, images: Tensor, artifact_file: str, nrow: int = 10) -> None:
    """Save a grid of images in [0, 1] as a PNG artifact."""
    folder, _, name = artifact_file.rpartition("/")
    with tracking.temp_dir() as tmp:
        tracking.log_artifact(run_id, save_grid(images, Path(tmp) / name, nrow), folder or None)


def log_evaluation(run_id: str, metrics: dict[str, float], step: int) -> None:
    """Evaluation metrics on the run, and the same as evaluation/report.json."""
    tracking.log_metrics(run_id, metrics, step=step)
    tracking.log_dict(run_id, metrics, "evaluation/report.json")


# --------------------------------------------------------------------------- export and registry


def generator_inputs(cfg: ImageConfig, latent_dim: int, n: int = 32) -> tuple[Tensor, Tensor]:
    """Seeded example inputs (z, y) of a (z, y) -> images module, for the parity check."""
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
    return z, torch.arange(n) % n_classes(cfg)


def export_module(cfg: ImageConfig, module: torch.nn.Module, inputs: tuple[Tensor, ...], run_id: str, step: int, extra: dict) -> str:
    """TorchScript and .pt2 (torch.export, where it can trace the module) of `module`, each parity-checked
    on `inputs` in a fresh process, logged under model/.

    The metadata embedded in the files (family, variant, dataset, classes, config, plus `extra`) is all
    that `rlgen sample` and `rlgen score` need besides the file itself.
    """
    module = module.eval().cpu()
    metadata = {
        "family": cfg.family,  # type: ignore[attr-defined]
        "variant": cfg.variant,  # type: ignore[attr-defined]
        "dataset": cfg.dataset,
        "conditional": cfg.conditional,
        "n_classes": n_classes(cfg),
        "config": cfg.model_dump(mode="json"),
        **extra,
    }
    with torch.no_grad():
        expected = module(*inputs)
    with tracking.temp_dir() as tmp:
        path = script_module(module, Path(tmp) / EXPORT_FILE, metadata)
        parity = check_parity(path, inputs, {"forward": expected})["forward"]
        tracking.log_metrics(run_id, {"export/max_abs_diff": parity.max_abs_diff}, step=step)
        if parity.max_abs_diff > 1e-5:
            raise RuntimeError(
                f"TorchScript export of {cfg.registered_name} does not match the eager model: "
                f"max |difference| = {parity.max_abs_diff:.3g} (limit 1e-5)"
            )
        program = export_checked_programs(module, inputs, Path(tmp) / PROGRAM_FILE, metadata, {"forward": expected})
        tracking.set_tags(run_id, program.tags())
        if program.paths:
            diff = program.parity["forward"].max_abs_diff
            tracking.log_metrics(run_id, {"export/pt2_max_abs_diff": diff}, step=step)
            if diff > 1e-5:
                raise RuntimeError(f".pt2 export of {cfg.registered_name} does not match the eager model: max |difference| = {diff:.3g} (limit 1e-5)")
        for file in (path, *program.paths):
            tracking.log_artifact(run_id, file, EXPORT_DIR)
    return EXPORT_DIR


def evaluation_key(cfg: ImageConfig, prepared: PreparedData) -> str:
    """What the image evaluation depends on: the prepared data's hash, the evaluator and the sample counts."""
    settings = [f"{k}={getattr(cfg, k)}" for k in ("fid_samples", "lenet_epochs", "iw_samples", "iw_images") if hasattr(cfg, k)]
    return promotion.evaluation_key(cfg.dataset, prepared.content_hash[:16], *settings)


def register(cfg: ImageConfig, run_id: str, artifact_dir: str, metrics: dict[str, float]) -> tracking.ModelVersion:
    """Register the exported module as a new version of `<variant>-<dataset>`."""
    tags = {"family": cfg.family, "variant": cfg.variant}  # type: ignore[attr-defined]
    tags.update({k: f"{v:.4g}" for k, v in metrics.items() if k in {"eval/fid_lenet", "eval/iw_nll", "eval/cond_accuracy"}})
    return tracking.register_model(run_id, artifact_dir, cfg.registered_name, tags=tags)


def flow_result(trained: ImageTrainOutput, metrics: dict[str, float], version: tracking.ModelVersion, decision: promotion.Decision) -> dict[str, float | str]:
    """What an image flow returns: its evaluation, speed, and the registered version with its alias."""
    return {
        **metrics,
        "perf/images_per_sec": trained.images_per_sec,
        "train/seconds": trained.seconds,
        "run_id": trained.run_id,
        "model": f"{version.name}/{version.version}",
        "alias": decision.alias,
    }


# --------------------------------------------------------------------------- Prefect tasks
# Data prep needs no Prefect cache policy: `prepare` keys its cache file by the SHA-256 of the source
# files' content and the split, so a rerun reuses it after re-hashing 10 MB (about 0.1 s), and a
# changed file can never be served from a stale Prefect cache keyed on the inputs.


@task(name="image-prepare-data", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_only_downloads)
def prepare_data_task(cfg: ImageConfig) -> PreparedData:
    return prepare_data(cfg)


@task(name="image-data-report")
def report_data_task(prepared: PreparedData, run_id: str) -> dict[str, float]:
    return report_data(prepared, run_id)


@task(name="image-evaluator")
def evaluator_task(cfg: ImageConfig, prepared: PreparedData, parent_id: str) -> EvaluatorRef:
    return ensure_evaluator(cfg, prepared, parent_id)


@task(name="image-register")
def register_task(cfg: ImageConfig, run_id: str, artifact_dir: str, metrics: dict[str, float]) -> tracking.ModelVersion:
    return register(cfg, run_id, artifact_dir, metrics)


@task(name="image-summarize")
def summarize_task(parent_id: str, trained: ImageTrainOutput, metrics: dict[str, float], version: tracking.ModelVersion) -> None:
    tracking.log_metrics(parent_id, {**metrics, "train/steps": trained.steps, "train/seconds": trained.seconds}, step=trained.steps)
    tracking.set_tags(parent_id, {"rlgen.model": f"{version.name}/{version.version}", "rlgen.train_run_id": trained.run_id})
