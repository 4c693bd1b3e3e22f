"""Language-model tasks: prepare the corpus, train, evaluate (perplexity, bits per character, samples),
export to TorchScript with the vocabulary, register. Plain functions first, thin Prefect tasks at the bottom."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import NamedTuple

import torch
from prefect import task

from models import lm
from models.common import autocast, compile_modules, seed_everything
from rlgen.config import ConfigError, LMConfig
from rlgen.settings import data_dir
from tasks import promotion, tracking
from tasks.checkpoint import TrainingSession, load_checkpoint, save_checkpoint
from tasks.export import check_parity, export_checked_programs, script_module
from tasks.image_data import retry_only_downloads
from tasks.lm_data import (
    PreparedCorpus,
    Vocabulary,
    generate,
    load_corpus,
    load_vocabulary,
    prepare_corpus,
)
from tasks.plots import learning_curve
from tasks.progress import fan_out, progress_bar
from tasks.runs import training_device

log = logging.getLogger(__name__)

EXPORT_DIR, EXPORT_FILE, VOCAB_FILE = "model", "model.pt", "vocab.json"
PROGRAM_FILE = "model.pt2"  # one step (T = 1) of forward: torch.export unrolls nn.LSTM/GRU over a fixed length
CHECKPOINT = "checkpoints/lm.pt"
TEMPERATURES = (0.5, 0.8, 1.0)
PROMPTS = {"tinyshakespeare": ("ROMEO:", "First Citizen:\n", "KING HENRY VI:\nWhat"), "wikitext-2": ("The", "= Valkyria Chronicles", "In 1914 , the")}
PARITY_LIMIT = 1e-5


class LMTrainOutput(NamedTuple):
    run_id: str
    checkpoint: str  # artifact path within the run
    steps: int
    epochs: int
    seconds: float  # training only, validation excluded
    tokens_per_sec: float
    best_val_loss: float
    stopped_early: bool


# --------------------------------------------------------------------------- data


def prepare_data(cfg: LMConfig) -> PreparedCorpus:
    """Read (or download) and verify the corpus, split it and cache vocabulary and token ids; validates the device first."""
    training_device(cfg)
    source = Path(cfg.corpus_path).expanduser() if cfg.corpus_path else None
    return prepare_corpus(cfg.level, cfg.corpus, source, data_dir() / "lm", data_dir(), cfg.val_fraction)


def report_data(prepared: PreparedCorpus, run_id: str) -> None:
    """Log the provenance (files, hashes, split rule, sizes) as params and the vocabulary as data/vocab.json."""
    tracking.log_params(run_id, {"data": prepared.provenance})
    tracking.log_metrics(run_id, {f"data/{role}_tokens": n for role, n in prepared.sizes.items()} | {"data/vocab_size": prepared.vocab_size})
    with tracking.temp_dir() as tmp:
        tracking.log_artifact(run_id, Path(shutil.copy(prepared.vocab_path, Path(tmp) / VOCAB_FILE)), "data")


def prompts(cfg: LMConfig, vocab: Vocabulary, data: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """Fixed prompts of a published corpus; for a custom one, the start of its validation text."""
    if cfg.corpus in PROMPTS:
        return PROMPTS[cfg.corpus]
    return (vocab.decode(data["valid"][: 16 if cfg.level == "char" else 4].tolist()),)


# --------------------------------------------------------------------------- training


def build_model(cfg: LMConfig, vocab_size: int) -> lm.RNNModel:
    """The configured model; adaptive-softmax cutoffs beyond the vocabulary are a ConfigError."""
    try:
        return lm.RNNModel(vocab_size, cfg.embedding, cfg.hidden, cfg.layers, cfg.cell, cfg.dropout, cfg.tie_weights,
                           cfg.cutoffs if cfg.adaptive_softmax else ())
    except ValueError as err:
        raise ConfigError(str(err)) from None


def train(cfg: LMConfig, prepared: PreparedCorpus, run_id: str) -> LMTrainOutput:
    """Truncated BPTT on the training streams; validation, annealing, early stopping and a text sample per validation."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data, vocab = load_corpus(prepared.path, device), load_vocabulary(prepared.vocab_path)
    model = build_model(cfg, len(vocab)).to(device)
    if cfg.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    try:
        streams = lm.batchify(data["train"], cfg.batch_size)  # (B, N / B)
    except ValueError as err:
        raise ConfigError(f"batch_size={cfg.batch_size}: the training split is too short ({err})") from None
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s: %s, %d parameters, vocabulary %d, %d training tokens, device %s", cfg.registered_name, cfg.model_dump(), n_params, len(vocab), prepared.sizes["train"], device)
    tracking.log_params(run_id, {"model.parameters": n_params, "device.resolved": str(device)})
    first_prompt = prompts(cfg, vocab, data)[0]

    def on_validation(epoch: int, step: int, loss: float) -> None:
        text = generate(model, vocab, first_prompt, cfg.sample_tokens, 0.8, cfg.seed)
        tracking.log_text(run_id, f"step {step}, validation loss {loss:.4f} nats/token, temperature 0.8\n\n{text}\n", f"samples/epoch_{epoch:03d}_step_{step:06d}.txt")

    if cfg.compile:
        compile_modules(model)
    session = TrainingSession(cfg, run_id, {"model": model, "optimizer": optimizer})
    budget = min(cfg.epochs * lm.windows_per_pass(streams, cfg.bptt), cfg.max_steps or 1 << 62)
    with autocast(device, cfg.amp), progress_bar(budget, cfg.registered_name, ("train/loss", "val/loss", "perf/tokens_per_sec")) as bar:
        on_metrics = fan_out(session.recorder, session.logger, bar)
        result = session.run(
            lambda start: lm.fit(model, optimizer, streams, data["valid"], bptt=cfg.bptt, epochs=cfg.epochs, max_steps=cfg.max_steps,
                                 clip=cfg.clip, anneal=cfg.anneal, patience=cfg.patience, eval_every=cfg.eval_every,
                                 eval_batch_size=cfg.eval_batch_size, on_metrics=on_metrics, on_validation=on_validation,
                                 log_every=cfg.log_every, after_step=session.after_step, start=start),
            lambda result: (result.steps, result.position), "lower lr or clip harder",
        )
    tokens_per_sec = (result.tokens - (session.start["tokens"] if session.start else 0)) / result.train_seconds  # this session's tokens only
    tracking.log_metrics(run_id, {"train/steps": result.steps, "train/epochs": result.epochs, "train/seconds": result.train_seconds,
                                  "train/tokens": result.tokens, "train/best_val_loss": result.best_val_loss, "train/best_step": result.best_step,
                                  "train/stopped_early": float(result.stopped_early), "perf/tokens_per_sec": tokens_per_sec}, step=result.steps)
    h = session.recorder.history
    curves = {"loss (nats/token)": {"train (mean since last log)": h["train/loss"], "validation": h["val/loss"]}, "learning rate": {"lr": h["train/lr"]}}
    with tracking.temp_dir() as tmp:
        state = {"config": cfg.model_dump(mode="json"), "model": result.best_state, "optimizer": optimizer.state_dict(), "step": result.best_step, "vocab_size": len(vocab)}
        tracking.log_artifact(run_id, save_checkpoint(Path(tmp) / "lm.pt", state), "checkpoints")
        tracking.log_artifact(run_id, learning_curve(curves, Path(tmp) / "learning_curve.png", f"{cfg.registered_name}, seed {cfg.seed}", xlabel="batch"), "plots")
    return LMTrainOutput(run_id, CHECKPOINT, result.steps, result.epochs, result.train_seconds, tokens_per_sec, result.best_val_loss, result.stopped_early)


def load_model(cfg: LMConfig, trained: LMTrainOutput, vocab_size: int, device: torch.device) -> lm.RNNModel:
    """The best weights from the checkpoint in the tracking store, in eval mode."""
    with tracking.temp_dir() as tmp:
        state = load_checkpoint(tracking.download(trained.run_id, trained.checkpoint, Path(tmp)), device)
    model = build_model(cfg, vocab_size).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


# --------------------------------------------------------------------------- evaluation


def evaluate(cfg: LMConfig, prepared: PreparedCorpus, trained: LMTrainOutput) -> dict[str, float]:
    """Validation and test loss and perplexity (char level: bits per character too); samples at three temperatures."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data, vocab = load_corpus(prepared.path, device), load_vocabulary(prepared.vocab_path)
    model = load_model(cfg, trained, len(vocab), device)
    test_is_valid = prepared.provenance["split"]["rule"] in {"single_file", "no_test"}
    metrics: dict[str, float] = {}
    for split in ("valid", "test"):
        if split == "test" and test_is_valid:
            continue  # the split rule made test the validation split: its figures would only repeat eval/valid_*
        loss = lm.evaluate(model, lm.batchify(data[split], cfg.eval_batch_size), cfg.bptt)
        metrics |= {f"eval/{split}_loss": loss, f"eval/{split}_perplexity": math.exp(min(loss, 50.0))}
        if cfg.level == "char":
            metrics[f"eval/{split}_bpc"] = loss / math.log(2)  # bits per character
    if test_is_valid:
        tracking.set_tags(trained.run_id, {"rlgen.metric_notes": f"no separate test split ({prepared.provenance['split']['description']}): eval/valid_* only"})
    for temperature in TEMPERATURES:
        texts = [generate(model, vocab, p, cfg.sample_tokens, temperature, cfg.seed) for p in prompts(cfg, vocab, data)]
        header = f"{cfg.registered_name}, temperature {temperature}, seed {cfg.seed}, {cfg.sample_tokens} tokens per prompt"
        tracking.log_text(trained.run_id, header + "\n\n" + "\n\n----------\n\n".join(texts) + "\n", f"evaluation/samples_t{temperature}.txt")
    tracking.log_metrics(trained.run_id, metrics, step=trained.steps)
    tracking.log_dict(trained.run_id, metrics, "evaluation/report.json")
    return metrics


# --------------------------------------------------------------------------- export and registry


def export(cfg: LMConfig, prepared: PreparedCorpus, trained: LMTrainOutput) -> str:
    """TorchScript of LMExport, and its one-token step as .pt2, with the vocabulary embedded, parity-checked with a non-zero state in fresh processes."""
    vocab = load_vocabulary(prepared.vocab_path)
    module = lm.LMExport(load_model(cfg, trained, len(vocab), torch.device("cpu"))).eval()
    valid = load_corpus(prepared.path)["valid"]
    n = min(16, valid.numel() // 4)
    warm, tokens = valid[: 2 * n].view(2, n), valid[2 * n : 4 * n].view(2, n)  # (2, n) each
    with torch.no_grad():
        _, h, c = module(warm, *module.initial_state(2))  # a state that is not zero
        expected = {"log_probs": module.log_probs(tokens, h, c), "state": module.state(tokens, h, c)}
        step = module(tokens[:, :1], h, c)  # (B, 1, V), h, c
    metadata = {
        "family": cfg.family, "level": cfg.level, "corpus": cfg.corpus, "cell": cfg.cell, "layers": cfg.layers, "hidden": cfg.hidden,
        "vocab_size": len(vocab), "vocab": vocab.to_json(), "output": "log_probs",
        "interface": "forward(tokens (B, T) int64, h (L, B, H), c (L, B, H)) -> (log_probs (B, T, V), h, c); initial_state(batch)",
        "config": cfg.model_dump(mode="json"), "content_hash": prepared.content_hash,
    }
    with tracking.temp_dir() as tmp:
        path = script_module(module, Path(tmp) / EXPORT_FILE, metadata)
        parity = check_parity(path, (tokens, h, c), expected)
        diffs = {"export/max_abs_diff": parity["log_probs"].max_abs_diff, "export/state_max_abs_diff": parity["state"].max_abs_diff}
        tracking.log_metrics(trained.run_id, diffs, step=trained.steps)
        if max(diffs.values()) > PARITY_LIMIT:
            raise RuntimeError(f"TorchScript export of {cfg.registered_name} does not match the eager model: log-probabilities differ by "
                               f"{diffs['export/max_abs_diff']:.3g} and the state by {diffs['export/state_max_abs_diff']:.3g} (limit {PARITY_LIMIT:g})")
        step_interface = "forward(tokens (B, 1) int64, h (L, B, H), c (L, B, H)) -> (log_probs (B, 1, V), h, c): one token per call"
        program = export_checked_programs(module, (tokens[:, :1], h, c), Path(tmp) / PROGRAM_FILE, {**metadata, "interface": step_interface},
                                          {"forward": step}, batch_dims=(0, 1, 1))
        tracking.set_tags(trained.run_id, program.tags())
        if program.paths:
            diff = program.parity["forward"].max_abs_diff  # log-probabilities and state
            tracking.log_metrics(trained.run_id, {"export/pt2_max_abs_diff": diff}, step=trained.steps)
            if diff > PARITY_LIMIT:
                raise RuntimeError(f".pt2 export of {cfg.registered_name} does not match the eager model: log-probabilities or state differ by "
                                   f"{diff:.3g} (limit {PARITY_LIMIT:g})")
        for file in (path, *program.paths):
            tracking.log_artifact(trained.run_id, file, EXPORT_DIR)
        tracking.log_artifact(trained.run_id, Path(shutil.copy(prepared.vocab_path, Path(tmp) / VOCAB_FILE)), EXPORT_DIR)
    return EXPORT_DIR


def register(cfg: LMConfig, run_id: str, artifact_dir: str, metrics: dict[str, float]) -> tracking.ModelVersion:
    """Register the exported module and its vocabulary as a new version of e.g. `lm-char-tinyshakespeare`."""
    tags = {"family": cfg.family, "level": cfg.level, "corpus": cfg.corpus, "cell": cfg.cell}
    tags |= {k: f"{v:.4g}" for k, v in metrics.items() if k.endswith(("_perplexity", "_bpc"))}
    return tracking.register_model(run_id, artifact_dir, cfg.registered_name, tags=tags)


def evaluation_key(cfg: LMConfig, prepared: PreparedCorpus) -> str:
    """What the evaluation depends on: the level, the prepared corpus (files and split) and how it is streamed."""
    return promotion.evaluation_key(cfg.level, cfg.corpus, prepared.content_hash[:16], f"bptt={cfg.bptt}", f"eval_batch_size={cfg.eval_batch_size}")


def flow_result(trained: LMTrainOutput, metrics: dict[str, float], version: tracking.ModelVersion, decision: promotion.Decision) -> dict[str, float | str]:
    """What the lm flow returns: its evaluation, speed, and the registered version with its alias."""
    return {**metrics, "perf/tokens_per_sec": trained.tokens_per_sec, "train/seconds": trained.seconds, "run_id": trained.run_id,
            "model": f"{version.name}/{version.version}", "alias": decision.alias}


def summarize(parent_id: str, trained: LMTrainOutput, metrics: dict[str, float], version: tracking.ModelVersion) -> None:
    """The key figures on the parent run, and which model version it produced."""
    tracking.log_metrics(parent_id, {**metrics, "train/steps": trained.steps, "train/seconds": trained.seconds, "perf/tokens_per_sec": trained.tokens_per_sec}, step=trained.steps)
    tracking.set_tags(parent_id, {"rlgen.model": f"{version.name}/{version.version}", "rlgen.train_run_id": trained.run_id})


# --------------------------------------------------------------------------- Prefect tasks
# Like the image data, the corpus needs no Prefect cache policy: prepare_corpus keys its cache by content hash.


@task(name="lm-prepare-data", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_only_downloads)
def prepare_data_task(cfg: LMConfig) -> PreparedCorpus:
    return prepare_data(cfg)


@task(name="lm-data-report")
def report_data_task(prepared: PreparedCorpus, run_id: str) -> None:
    report_data(prepared, run_id)


@task(name="lm-train")
def train_task(cfg: LMConfig, prepared: PreparedCorpus, run_id: str) -> LMTrainOutput:
    return train(cfg, prepared, run_id)


@task(name="lm-evaluate")
def evaluate_task(cfg: LMConfig, prepared: PreparedCorpus, trained: LMTrainOutput) -> dict[str, float]:
    return evaluate(cfg, prepared, trained)


@task(name="lm-export")
def export_task(cfg: LMConfig, prepared: PreparedCorpus, trained: LMTrainOutput) -> str:
    return export(cfg, prepared, trained)


@task(name="lm-register")
def register_task(cfg: LMConfig, run_id: str, artifact_dir: str, metrics: dict[str, float]) -> tracking.ModelVersion:
    return register(cfg, run_id, artifact_dir, metrics)


@task(name="lm-summarize")
def summarize_task(parent_id: str, trained: LMTrainOutput, metrics: dict[str, float], version: tracking.ModelVersion) -> None:
    summarize(parent_id, trained, metrics, version)
