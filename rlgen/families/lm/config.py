"""Configuration of the LM family: recurrent language models at character or word level."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rlgen.config.base import TrainConfig, depends

if TYPE_CHECKING:
    from rlgen.pipeline.config import PipelineConfig

CORPUS_FILES = {"tinyshakespeare": "input.txt", "wikitext-2": ""}  # where a corpus sits under the pipeline's data_root


def by_level(char: Any, word: Any, description: str, **constraints: Any) -> Any:
    """A key whose default depends on the level. The character level has its own quick-budget defaults; the word
    level starts from PyTorch's word_language_model example (embedding and hidden 200, 2 layers, bptt 35, batch 20,
    dropout 0.2, SGD at lr 20 divided by 4 when validation stops improving, clip 0.25)."""
    return depends("level", {"char": char, "word": word}, description, **constraints)


class LMConfig(TrainConfig):
    """An Embedding -> LSTM/GRU/tanh-RNN -> Linear language model trained by truncated back-propagation through time."""

    family: ClassVar[str] = "lm"

    level: Literal["char", "word"] = Field(
        "char",
        description="char (every character, newline included, is a token) or word (whitespace-split, <eos> per line).",
    )
    corpus: Literal["tinyshakespeare", "wikitext-2", "custom"] = by_level(
        "tinyshakespeare",
        "wikitext-2",
        "tinyshakespeare or wikitext-2, checked against their published SHA-256; custom: your own text in corpus_path.",
    )
    corpus_path: str | None = Field(
        None,
        description="Read offline: a text file (split first 1 - val_fraction / last val_fraction) or a folder of "
        "train/valid/test files (.txt or wiki.*.tokens); default: download the corpus into $RLGEN_DATA_DIR.",
    )
    val_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of a single-file corpus held out (its end) for validation."
    )
    cell: Literal["lstm", "gru", "rnn"] = Field("lstm", description="Recurrent cell: lstm, gru or rnn (tanh).")
    layers: int = Field(2, ge=1, le=8, description="Stacked recurrent layers.")
    hidden: int = by_level(256, 200, "Hidden units per layer.", gt=0)
    embedding: int = by_level(64, 200, "Token embedding size; must equal hidden with tie_weights.", gt=0)
    dropout: float = by_level(
        0.1, 0.2, "Dropout on the embeddings, between layers and before the decoder.", ge=0.0, lt=1.0
    )
    tie_weights: bool = Field(False, description="Share the embedding matrix with the decoder (Press & Wolf 2017).")
    adaptive_softmax: bool = Field(
        False, description="Adaptive softmax (Grave et al. 2017) instead of the full softmax; word level."
    )
    cutoffs: tuple[int, ...] = Field(
        (2000, 10000),
        description="Adaptive-softmax cluster boundaries in the frequency-sorted vocabulary, e.g. 2000,10000.",
    )
    bptt: int = by_level(128, 35, "Tokens per truncated back-propagation window.", gt=1)
    batch_size: int = by_level(32, 20, "Parallel token streams per batch.", gt=0)
    eval_batch_size: int = by_level(64, 10, "Parallel streams when evaluating validation and test.", gt=0)
    epochs: int = by_level(5, 6, "Passes over the training tokens.", gt=0)
    max_steps: int | None = Field(None, gt=0, description="Stop after this many batches (tests, quick runs).")
    eval_every: int | None = Field(
        None, gt=0, description="Validate every this many batches; default once per epoch (and always at the end)."
    )
    optimizer: Literal["adam", "sgd"] = by_level("adam", "sgd", "adam or sgd.")
    lr: float = by_level(2e-3, 20.0, "Learning rate.", gt=0.0)
    clip: float = by_level(1.0, 0.25, "Clip the global gradient norm to this (0: no clipping).", ge=0.0)
    anneal: float = by_level(
        0.5, 0.25, "Multiply the learning rate by this when validation does not improve (1: never).", gt=0.0, le=1.0
    )
    patience: int = by_level(3, 2, "Stop after this many validations in a row without improvement.", ge=1)
    log_every: int = Field(10, gt=0, description="Batches between training-metric logs.")
    sample_tokens: int = by_level(
        300, 100, "Tokens in each generated sample logged per validation and at evaluation.", gt=0, le=10_000
    )

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
            raise ValueError(
                "tie_weights cannot be combined with adaptive_softmax (its head has no single output matrix); drop one"
            )
        if self.adaptive_softmax and (
            not self.cutoffs or list(self.cutoffs) != sorted(set(self.cutoffs)) or self.cutoffs[0] <= 0
        ):
            raise ValueError(
                f"cutoffs must be increasing positive sizes such as 2000,10000; got {','.join(map(str, self.cutoffs))}"
            )
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
        source: str = self.corpus
        if self.corpus == "custom":
            path = Path(self.corpus_path or "custom")
            source = (
                re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem if path.suffix else path.name).strip("-").lower() or "custom"
            )
        suffix = "" if self.cell == "lstm" else f"-{self.cell}"
        return f"lm-{self.level}-{source}{suffix}"

    @classmethod
    def pipeline_data(cls, values: dict[str, Any], pipeline: PipelineConfig) -> dict[str, Any]:
        """The corpus read offline from the pipeline's data_root (`tinyshakespeare/input.txt`, `wikitext-2/`)."""
        corpus = values.get("corpus")
        if not pipeline.data_root or corpus not in CORPUS_FILES:
            return {}
        return {"corpus_path": str(Path(pipeline.data_root).expanduser() / corpus / CORPUS_FILES[corpus])}
