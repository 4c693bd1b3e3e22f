"""What trains, evaluates and exports the LM family: perplexity and bits per character, samples at three
temperatures, the TorchScript module with its vocabulary and its one-token step as .pt2."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models import lm
from rlgen.data.corpora import PreparedCorpus, load_corpus, load_vocabulary
from rlgen.data.vocabulary import Vocabulary, generate
from rlgen.domains import CORPUS as DOMAIN
from rlgen.errors import ConfigError
from rlgen.export.checked import ExportSpec
from rlgen.families.lm.config import LMConfig
from rlgen.families.lm.trainer import LMTrainer
from rlgen.family import Loaded, Panels, Series
from rlgen.tracking.artifacts import log_text
from rlgen.tracking.runs import set_tags

__all__ = ["DOMAIN", "build", "curves", "evaluate", "export", "trainer"]

TEMPERATURES = (0.5, 0.8, 1.0)
PROMPTS = {
    "tinyshakespeare": ("ROMEO:", "First Citizen:\n", "KING HENRY VI:\nWhat"),
    "wikitext-2": ("The", "= Valkyria Chronicles", "In 1914 , the"),
}


def build(cfg: LMConfig, prepared: PreparedCorpus) -> dict[str, nn.Module]:
    """The configured model; adaptive-softmax cutoffs beyond the vocabulary are a ConfigError."""
    try:
        cutoffs = cfg.cutoffs if cfg.adaptive_softmax else ()
        model = lm.RNNModel(
            prepared.vocab_size, cfg.embedding, cfg.hidden, cfg.layers, cfg.cell, cfg.dropout, cfg.tie_weights, cutoffs
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return {"model": model}


def prompts(cfg: LMConfig, vocab: Vocabulary, data: dict[str, Tensor]) -> tuple[str, ...]:
    """Fixed prompts of a published corpus; for a custom one, the start of its validation text."""
    if cfg.corpus in PROMPTS:
        return PROMPTS[cfg.corpus]
    return (vocab.decode(data["valid"][: 16 if cfg.level == "char" else 4].tolist()),)


def _model(trained_or_modules: dict[str, nn.Module]) -> lm.RNNModel:
    model = trained_or_modules["model"]
    assert isinstance(model, lm.RNNModel)
    return model


def trainer(
    cfg: LMConfig, prepared: PreparedCorpus, modules: dict[str, nn.Module], device: torch.device, context: None = None
) -> LMTrainer:
    data, vocab = load_corpus(prepared.path, device), load_vocabulary(prepared.vocab_path)
    try:
        streams = lm.batchify(data["train"], cfg.batch_size)  # (B, N / B)
    except ValueError as err:
        raise ConfigError(f"batch_size={cfg.batch_size}: the training split is too short ({err})") from None
    return LMTrainer(cfg, _model(modules), streams, data["valid"], vocab, prompts(cfg, vocab, data)[0], device)


def curves(history: dict[str, Series]) -> Panels:
    return {
        "loss (nats/token)": {
            "train (mean since last log)": history.get("train/loss", []),
            "validation": history.get("val/loss", []),
        },
        "learning rate": {"lr": history.get("train/lr", [])},
    }


def evaluate(cfg: LMConfig, prepared: PreparedCorpus, trained: Loaded, context: None, run_id: str) -> dict[str, float]:
    """Validation and test loss and perplexity (char level: bits per character too); samples at three temperatures."""
    model = _model(trained.modules)
    device = model.encoder.weight.device
    data, vocab = load_corpus(prepared.path, device), load_vocabulary(prepared.vocab_path)
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
        note = f"no separate test split ({prepared.provenance['split']['description']}): eval/valid_* only"
        set_tags(run_id, {"rlgen.metric_notes": note})
    for temperature in TEMPERATURES:
        texts = [generate(model, vocab, p, cfg.sample_tokens, temperature, cfg.seed) for p in prompts(cfg, vocab, data)]
        header = (
            f"{cfg.registered_name}, temperature {temperature}, seed {cfg.seed}, {cfg.sample_tokens} tokens per prompt"
        )
        log_text(
            run_id, header + "\n\n" + "\n\n----------\n\n".join(texts) + "\n", f"evaluation/samples_t{temperature}.txt"
        )
    return metrics


def export(cfg: LMConfig, prepared: PreparedCorpus, trained: Loaded) -> ExportSpec:
    """LMExport with the vocabulary embedded, checked with a non-zero state; its one-token step as .pt2
    (torch.export unrolls nn.LSTM/GRU over a fixed length)."""
    vocab = load_vocabulary(prepared.vocab_path)
    module = lm.LMExport(_model(trained.modules)).eval()
    valid = load_corpus(prepared.path)["valid"]
    n = min(16, valid.numel() // 4)
    warm, tokens = valid[: 2 * n].view(2, n), valid[2 * n : 4 * n].view(2, n)  # (2, n) each
    with torch.no_grad():
        _, h, c = module(warm, *module.initial_state(2))  # a state that is not zero
    metadata = {
        "level": cfg.level,
        "corpus": cfg.corpus,
        "cell": cfg.cell,
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "vocab_size": len(vocab),
        "vocab": vocab.to_json(),
        "output": "log_probs",
        "content_hash": prepared.content_hash,
        "calls": "forward(tokens (B, T) int64, h (L, B, H), c (L, B, H)) -> (log_probs (B, T, V), h, c); "
        "initial_state(batch)",
    }
    step = "forward(tokens (B, 1) int64, h (L, B, H), c (L, B, H)) -> (log_probs (B, 1, V), h, c): one token per call"
    return ExportSpec(
        module,
        (tokens, h, c),
        metadata,
        methods=("log_probs", "state"),
        program_inputs=(tokens[:, :1], h, c),
        program_methods=("forward",),
        program_metadata={"calls": step},
        batch_dims=(0, 1, 1),
        extra_files={"vocab.json": prepared.vocab_path},
    )
