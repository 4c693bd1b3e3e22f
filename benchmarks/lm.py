"""Language-model figures: character-level quality after the default (quick) budget on Tiny Shakespeare; word-level
training tokens/s and perplexity of the classic-size LSTM with the full softmax and with the adaptive softmax (same
run, same data, same budget); generation tokens/s of each exported TorchScript module. Each model is trained by the
real flow (`rlgen run lm ...` in a fresh process) against a throwaway store.

`--speed` measures training speed alone, in a minute and in-process: tokens/s and characters/s of the family's own
trainer (rlgen.families.lm.trainer.LMTrainer, built as the flow builds it, the default config of each run, real
data) stepped over consecutive windows, state carried, its validations excluded as in its own perf/tokens_per_sec.

    python -m benchmarks.lm [--only char word word-adaptive] [--data-root ../shared/data] [--set KEY=VALUE ...]
    python -m benchmarks.lm --speed [--seconds 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from benchmarks.common import (
    DATA,
    RESULTS,
    Figure,
    Options,
    Training,
    build_trainer,
    env,
    print_table,
    run_quietly,
    save,
    scratch_home,
    time_for,
)
from benchmarks.machine import describe

if TYPE_CHECKING:
    from rlgen.families.lm import LMConfig
    from rlgen.families.lm.trainer import LMTrainer

RUNS = {  # name: overrides, given the data root
    "char": lambda root: ["level=char", f"corpus_path={root / 'tinyshakespeare' / 'input.txt'}"],
    "word": lambda root: ["level=word", f"corpus_path={root / 'wikitext-2'}"],
    "word-adaptive": lambda root: ["level=word", f"corpus_path={root / 'wikitext-2'}", "adaptive_softmax=true"],
}
COLUMNS = [
    "eval/valid_loss",
    "eval/valid_bpc",
    "eval/valid_perplexity",
    "eval/test_perplexity",
    "perf/tokens_per_sec",
    "train/seconds",
    "generate/tokens_per_sec",
]


def run_flow(overrides: list[str], home: Path) -> tuple[dict, float]:
    """Run `rlgen run lm` in a fresh process; return its result and wall time."""
    command = [
        str(Path(sys.executable).with_name("rlgen")),
        "run",
        "lm",
        *(arg for pair in overrides for arg in ("--set", pair)),
    ]
    seconds, result = run_quietly(command, {"RLGEN_HOME": str(home)}, home / "result.json")
    return result, seconds


def generation_speed(model: str, home: Path, tokens: int = 2000) -> float:
    """Tokens/s of sampling one stream from the registered model, loaded as every rlgen command loads it (its MLflow
    pyfunc model, which runs the TorchScript module); temperature 0.8, top-k 40."""
    import pandas as pd

    from rlgen.serving.load import load

    with env(RLGEN_HOME=str(home)):  # the store of this benchmark's runs
        loaded = load(model, "generate")
    prompt = "ROMEO:" if loaded.metadata.get("level") == "char" else "The"

    def request(n: int) -> pd.DataFrame:
        return pd.DataFrame({"prompt": [prompt], "tokens": [n], "temperature": [0.8], "top_k": [40], "seed": [0]})

    loaded.predict(request(50))  # warm-up: TorchScript profiles its first calls
    started = time.perf_counter()
    loaded.predict(request(tokens))
    return tokens / (time.perf_counter() - started)


def quality(names: list[str], data_root: Path, extra: list[str]) -> dict[str, dict]:
    """Train each named run through the real flow, then time generation; one row of COLUMNS per run."""
    rows = {}
    print(f"{'model':<14} {'minutes':>7} " + " ".join(f"{c.split('/')[-1]:>16}" for c in COLUMNS), flush=True)
    with tempfile.TemporaryDirectory(prefix="rlgen-bench-lm-") as tmp:
        for name in names:
            home = Path(tmp) / name
            home.mkdir()
            result, seconds = run_flow(RUNS[name](data_root.resolve()) + extra, home)
            metrics = dict(result["metrics"])  # the flow's ModelResult: evaluation, then train/* and perf/*
            metrics["generate/tokens_per_sec"] = generation_speed(str(result["model"]).split("/")[0], home)
            rows[name] = {
                "wall_seconds": round(seconds, 1),
                "model": result["model"],
                **{c: metrics.get(c) for c in COLUMNS},
            }
            cells = " ".join(
                f"{metrics[c]:>16.4g}" if isinstance(metrics.get(c), float) else f"{'-':>16}" for c in COLUMNS
            )
            print(f"{name:<14} {seconds / 60:>7.1f} {cells}", flush=True)
    if {"word", "word-adaptive"} <= set(rows):
        speedup = rows["word-adaptive"]["perf/tokens_per_sec"] / rows["word"]["perf/tokens_per_sec"]
        rows["adaptive_vs_full"] = {
            "speedup": speedup,
            "valid_perplexity": [rows["word"]["eval/valid_perplexity"], rows["word-adaptive"]["eval/valid_perplexity"]],
        }
        print(
            f"adaptive softmax vs full softmax: {speedup:.2f}x training tokens/s; validation perplexity "
            f"{rows['word-adaptive']['eval/valid_perplexity']:.1f} vs {rows['word']['eval/valid_perplexity']:.1f}"
        )
    return rows


def quality_figures(opts: Options) -> list[Figure]:
    """The suite's LM quality figures (full mode): every run's flow with its default budget, on the CPU."""
    figures = []
    for name, row in quality(list(RUNS), DATA, [f"device={opts.device}"]).items():
        if name == "adaptive_vs_full":
            figures.append(
                Figure(
                    "lm_quality",
                    "adaptive vs full softmax",
                    row["speedup"],
                    "x",
                    "training tokens/s, same data and epochs",
                )
            )
            continue
        for key in (
            "eval/valid_loss",
            "eval/valid_perplexity",
            "eval/valid_bpc",
            "perf/tokens_per_sec",
            "generate/tokens_per_sec",
        ):
            if isinstance(row.get(key), float):
                unit = {"eval/valid_loss": "nats/token", "eval/valid_bpc": "bits/char"}.get(
                    key, "tokens/s" if "tokens" in key else ""
                )
                figures.append(
                    Figure(
                        "lm_quality",
                        f"{name}: {key}",
                        row[key],
                        unit,
                        f"flow in {row['wall_seconds'] / 60:.1f} min, {row['model']}",
                        str(opts.device),
                    )
                )
    return figures


# --------------------------------------------------------------------------- training speed alone, in-process


class TrainStep(NamedTuple):
    training: Training  # the run's trainer: one step is one training batch on the next window, the state carried over
    tokens: int  # tokens per batch (batch_size x bptt)
    chars_per_token: float  # characters of decoded training text per token (1 at char level)


SPEED_EPOCHS = 1_000  # a budget no speed measurement exhausts (epochs set the trainer's budget and nothing else)


def run_config(name: str, device: torch.device, data_root: Path = DATA) -> LMConfig:
    """Run `name`'s default config on its offline corpus under `data_root`, on `device`, its budget raised."""
    from rlgen.config import config_from_overrides
    from rlgen.families.lm import LMConfig

    overrides = [*RUNS[name](data_root.resolve()), f"device={device}", f"epochs={SPEED_EPOCHS}"]
    return config_from_overrides(LMConfig, overrides)


def build_train_step(name: str, device: torch.device, data_root: Path = DATA) -> TrainStep:
    """Run `name`'s default config on its real corpus, its trainer built as the flow builds it (model, optimizer,
    streams); the corpus prepared, or found in the cache, under the current rlgen home."""
    from rlgen import steps
    from rlgen.data.corpora import load_corpus, load_vocabulary

    cfg = run_config(name, device, data_root)
    prepared = steps.prepare(cfg)
    sample = load_corpus(prepared.path)["train"][:20_000].tolist()
    chars_per_token = len(load_vocabulary(prepared.vocab_path).decode(sample)) / len(sample)
    return TrainStep(build_trainer(cfg, prepared), cfg.batch_size * cfg.bptt, chars_per_token)


def lm_trainer(step: TrainStep) -> LMTrainer:
    from rlgen.families.lm.trainer import LMTrainer

    trainer = step.training.trainer
    assert isinstance(trainer, LMTrainer), f"{trainer.name} is not an LMTrainer"
    return trainer


def training_rate(step: TrainStep, seconds: float, warmup: int = 2) -> tuple[float, int]:
    """Training tokens/s of the trainer over `seconds` after `warmup` batches, its validations excluded (as its own
    perf/tokens_per_sec), and the batches measured."""
    trainer = lm_trainer(step)
    step.training.warm_up(warmup)
    tokens = trainer.tokens
    timing = step.training.time(seconds, warmup=0, excluded=lambda: trainer.eval_seconds)
    return (trainer.tokens - tokens) / timing.seconds, timing.calls


class ClassicStep(NamedTuple):
    run: Callable[[], None]  # one training batch of the classic example on the next window
    tokens: int  # tokens per batch


def build_classic_step(device: torch.device, data_root: Path = DATA) -> ClassicStep:
    """The classic PyTorch example's word LSTM (pytorch/examples word_language_model, defaults: embedding 200, hidden
    200, 2 layers, dropout 0.2, bptt 35, batch 20, log_softmax + NLLLoss, clip 0.25, plain SGD by `p.data.add_`),
    written out as it is there, on the same corpus and vocabulary as rlgen's word run: the baseline the issue's target
    refers to."""
    from torch import nn
    from torch.nn import functional

    from models import lm
    from rlgen import steps
    from rlgen.data.corpora import load_corpus, load_vocabulary

    cfg = run_config("word", device, data_root)
    prepared = steps.prepare(cfg)  # the same prepared corpus and vocabulary as rlgen's word run
    train, ntoken = load_corpus(prepared.path, device)["train"], len(load_vocabulary(prepared.vocab_path))
    bptt, batch, lr, clip = 35, 20, 20.0, 0.25

    class RNNModel(nn.Module):  # the example's model.py, LSTM, untied
        def __init__(self) -> None:
            super().__init__()
            self.drop, self.encoder = nn.Dropout(0.2), nn.Embedding(ntoken, 200)
            self.rnn, self.decoder = nn.LSTM(200, 200, 2, dropout=0.2), nn.Linear(200, ntoken)

        def forward(
            self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
        ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            output, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
            return functional.log_softmax(self.decoder(self.drop(output)).view(-1, ntoken), dim=1), hidden

    model, criterion = RNNModel().to(device).train(), nn.NLLLoss()
    data = lm.batchify(train, batch).t().contiguous()  # (N / B, B): the example's sequence-first layout
    zeros = torch.zeros(2, batch, 200, device=device)
    position, hidden = 0, (zeros, zeros.clone())

    def run() -> None:
        nonlocal position, hidden
        if position + bptt + 1 > data.size(0):  # a new pass
            position, hidden = 0, (zeros, zeros.clone())
        x, y = data[position : position + bptt], data[position + 1 : position + 1 + bptt].reshape(-1)
        model.zero_grad()
        hidden = tuple(h.detach() for h in hidden)
        output, hidden = model(x, hidden)
        criterion(output, y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        position += bptt

    return ClassicStep(run, batch * bptt)


SPEED_NAMES = {"char": "char (2x256 LSTM)", "word": "word, full softmax", "word-adaptive": "word, adaptive softmax"}


def speed_figures(seconds: float, device: torch.device, data_root: Path = DATA) -> list[Figure]:
    """Training tokens/s and characters/s of each run's default config, validation excluded."""
    figures = []
    with scratch_home("rlgen-bench-lm-"):
        for name, label in SPEED_NAMES.items():
            step = build_train_step(name, device, data_root)
            rate, batches = training_rate(step, seconds)
            detail = f"{batches} batches of {step.tokens} tokens, {step.chars_per_token:.2f} chars/token"
            if name == "char":  # a token is a character
                figures.append(Figure("lm", f"{label}: training", rate, "tokens/s = chars/s", detail, str(device)))
                continue
            figures.append(Figure("lm", f"{label}: training", rate, "tokens/s", detail, str(device)))
            figures.append(
                Figure("lm", f"{label}: training", rate * step.chars_per_token, "chars/s", detail, str(device))
            )
            if name == "word":  # the same-size model as the classic PyTorch example writes it, same data, same run
                classic_step = build_classic_step(device, data_root)
                classic = time_for(classic_step.run, seconds, warmup=2, device=device)
                theirs = classic.per_sec(classic_step.tokens)
                figures.append(
                    Figure(
                        "lm",
                        "word, the classic PyTorch example: training",
                        theirs,
                        "tokens/s",
                        f"{classic.calls} batches of {classic_step.tokens} tokens; rlgen's full softmax: "
                        f"{rate / theirs:.2f}x",
                        str(device),
                    )
                )
    return figures


def figures(opts: Options) -> list[Figure]:
    """The suite's LM speed figures: 8 s per run with --quick, 60 s otherwise."""
    return speed_figures(8.0 if opts.quick else 60.0, opts.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra KEY=VALUE for every run")
    parser.add_argument("--speed", action="store_true", help="training speed alone, in-process (no flows)")
    parser.add_argument("--seconds", type=float, default=20.0, help="--speed: measuring time per run")
    parser.add_argument("--device", default="cpu", help="--speed: the training device")
    args = parser.parse_args()
    if args.speed:
        from models.common import resolve_device

        rows = speed_figures(args.seconds, resolve_device(args.device), args.data_root)
        print_table(rows, "language models: training speed")
        save(rows, RESULTS / "lm_speed.json")
        return
    rows = quality(args.only, args.data_root, args.extra)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("lm.json" if set(args.only) == set(RUNS) else f"lm-{'-'.join(args.only)}.json")
    out.write_text(json.dumps({"machine": describe(torch.device("cpu")), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
