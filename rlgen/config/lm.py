"""Configuration of the lm flow: recurrent language models at character or word level."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rlgen.config.base import TrainConfig

# The word level starts from PyTorch's word_language_model example (its LSTM: embedding 200, hidden 200,
# 2 layers, bptt 35, batch 20, dropout 0.2, SGD at lr 20 divided by 4 when validation stops improving,
# clip 0.25); a key the user sets wins. The class defaults below are the character-level quick budget.
WORD_DEFAULTS = {
    "corpus": "wikitext-2", "embedding": 200, "hidden": 200, "layers": 2, "dropout": 0.2, "bptt": 35,
    "batch_size": 20, "eval_batch_size": 10, "optimizer": "sgd", "lr": 20.0, "clip": 0.25, "anneal": 0.25, "epochs": 6,
    "patience": 2, "sample_tokens": 100,
}


class LMConfig(TrainConfig):
    """An Embedding -> LSTM/GRU/tanh-RNN -> Linear language model trained by truncated back-propagation through time."""

    family: ClassVar[str] = "lm"

    @model_validator(mode="before")
    @classmethod
    def _level_defaults(cls, data: object) -> object:
        """level=word starts from the classic word_language_model settings unless a key is set."""
        if isinstance(data, dict) and data.get("level") == "word":
            return {**WORD_DEFAULTS, **data}
        return data

    level: Literal["char", "word"] = Field(
        "char", description="char (every character, newline included, is a token) or word (whitespace-split, <eos> per line)."
    )
    corpus: Literal["tinyshakespeare", "wikitext-2", "custom"] = Field(
        "tinyshakespeare",
        description="tinyshakespeare (char) or wikitext-2 (word; the default when level=word), checked against their "
        "published SHA-256; custom: your own text in corpus_path.",
    )
    corpus_path: str | None = Field(
        None,
        description="Read offline: a text file (split first 1 - val_fraction / last val_fraction) or a folder of "
        "train/valid/test files (.txt or wiki.*.tokens); default: download the corpus into $RLGEN_DATA_DIR.",
    )
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="Share of a single-file corpus held out (its end) for validation.")
    cell: Literal["lstm", "gru", "rnn"] = Field("lstm", description="Recurrent cell: lstm, gru or rnn (tanh).")
    layers: int = Field(2, ge=1, le=8, description="Stacked recurrent layers (word: 2).")
    hidden: int = Field(256, gt=0, description="Hidden units per layer (word: 200).")
    embedding: int = Field(64, gt=0, description="Token embedding size (word: 200); must equal hidden with tie_weights.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the embeddings, between layers and before the decoder (word: 0.2).")
    tie_weights: bool = Field(False, description="Share the embedding matrix with the decoder (Press & Wolf 2017).")
    adaptive_softmax: bool = Field(False, description="Adaptive softmax (Grave et al. 2017) instead of the full softmax; word level.")
    cutoffs: tuple[int, ...] = Field(
        (2000, 10000), description="Adaptive-softmax cluster boundaries in the frequency-sorted vocabulary, e.g. 2000,10000."
    )
    bptt: int = Field(128, gt=1, description="Tokens per truncated back-propagation window (word: 35).")
    batch_size: int = Field(32, gt=0, description="Parallel token streams per batch (word: 20).")
    eval_batch_size: int = Field(64, gt=0, description="Parallel streams when evaluating validation and test (word: 10).")
    epochs: int = Field(5, gt=0, description="Passes over the training tokens (word: 6).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many batches (tests, quick runs).")
    eval_every: int | None = Field(
        None, gt=0, description="Validate every this many batches; default once per epoch (and always at the end)."
    )
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam or sgd (word: sgd, as the classic example).")
    lr: float = Field(2e-3, gt=0.0, description="Learning rate (word: 20 with SGD).")
    clip: float = Field(1.0, ge=0.0, description="Clip the global gradient norm to this (0: no clipping; word: 0.25).")
    anneal: float = Field(
        0.5, gt=0.0, le=1.0, description="Multiply the learning rate by this when validation does not improve (word: 0.25; 1: never)."
    )
    patience: int = Field(3, ge=1, description="Stop after this many validations in a row without improvement (word: 2).")
    log_every: int = Field(10, gt=0, description="Batches between training-metric logs.")
    sample_tokens: int = Field(300, gt=0, le=10_000, description="Tokens in each generated sample logged per epoch and at evaluation (word: 100).")

    @field_validator("cutoffs", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """`--set cutoffs=2000,10000` arrives as a string."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.strip("()[] ").split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LMConfig:
        if self.tie_weights and self.embedding != self.hidden:
            raise ValueError(
                f"tie_weights needs embedding == hidden, got embedding={self.embedding} and hidden={self.hidden}; "
                f"set both to the same size (e.g. --set embedding={self.hidden}) or drop tie_weights"
            )
        if self.tie_weights and self.adaptive_softmax:
            raise ValueError("tie_weights cannot be combined with adaptive_softmax (its head has no single output matrix); drop one")
        if self.adaptive_softmax and (not self.cutoffs or list(self.cutoffs) != sorted(set(self.cutoffs)) or self.cutoffs[0] <= 0):
            raise ValueError(f"cutoffs must be increasing positive sizes such as 2000,10000; got {','.join(map(str, self.cutoffs))}")
        expected = {"tinyshakespeare": "char", "wikitext-2": "word"}.get(self.corpus)
        if expected is not None and expected != self.level:
            raise ValueError(
                f"corpus={self.corpus} is a {expected}-level corpus but level={self.level}; use level={expected}, "
                f"or corpus=custom with corpus_path to model its text at the {self.level} level"
            )
        if self.corpus == "custom" and self.corpus_path is None:
            raise ValueError("corpus=custom needs corpus_path: a text file or a folder of train/valid/test files")
        return self

    @property
    def registered_name(self) -> str:
        """The MLflow registered-model name, e.g. `lm-char-tinyshakespeare`; GRU and RNN cells add their name."""
        source = self.corpus
        if self.corpus == "custom":
            path = Path(self.corpus_path or "custom")
            source = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem if path.suffix else path.name).strip("-").lower() or "custom"
        suffix = "" if self.cell == "lstm" else f"-{self.cell}"
        return f"lm-{self.level}-{source}{suffix}"
