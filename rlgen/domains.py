"""Where a family's data comes from: MNIST-like images, a text corpus, or a Gymnasium environment.

Each domain prepares (and caches) its data, records its provenance on the flow's run, provides what the
evaluation needs beyond the model, and names the data's part of the evaluation key. Families pick one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rlgen import environments
from rlgen.config.image import ImageConfig
from rlgen.data import corpora
from rlgen.data.images import PreparedData, load_prepared, prepare
from rlgen.data.report import data_report
from rlgen.evaluation.images import EvaluatorRef, ensure_evaluator
from rlgen.settings import data_dir
from rlgen.tracking.artifacts import log_artifact, temp_dir
from rlgen.tracking.runs import log_metrics, log_params


class Images:
    """MNIST-family IDX files, split with a seed and cached by content hash; judged by a LeNet evaluator."""

    def prepare(self, cfg: ImageConfig) -> PreparedData:
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

    def report(self, cfg: ImageConfig, prepared: PreparedData, run_id: str) -> None:
        """The provenance as params, and the natural-image-statistics report (figure and metrics)."""
        log_params(run_id, {"data": prepared.provenance})
        data = load_prepared(prepared.path)
        with temp_dir() as tmp:
            figure = Path(tmp) / "data_report.png"
            metrics = data_report(data["train_images"], figure, f"{prepared.provenance['dataset']} train split")
            log_artifact(run_id, figure, "data")
        log_metrics(run_id, metrics)

    def context(self, cfg: ImageConfig, prepared: PreparedData, parent_id: str) -> EvaluatorRef:
        return ensure_evaluator(cfg, prepared, parent_id)

    def evaluation_parts(self, cfg: ImageConfig, prepared: PreparedData) -> tuple[str, ...]:
        return cfg.dataset, prepared.content_hash[:16]


class Corpus:
    """A text corpus, verified against its published SHA-256, split, tokenized and cached by content hash."""

    VOCAB_FILE = "vocab.json"

    def prepare(self, cfg: Any) -> corpora.PreparedCorpus:
        source = Path(cfg.corpus_path).expanduser() if cfg.corpus_path else None
        return corpora.prepare_corpus(cfg.level, cfg.corpus, source, data_dir() / "lm", data_dir(), cfg.val_fraction)

    def report(self, cfg: Any, prepared: corpora.PreparedCorpus, run_id: str) -> None:
        """The provenance (files, hashes, split rule, sizes) as params and the vocabulary as data/vocab.json."""
        log_params(run_id, {"data": prepared.provenance})
        sizes: dict[str, float] = {f"data/{role}_tokens": n for role, n in prepared.sizes.items()}
        log_metrics(run_id, sizes | {"data/vocab_size": prepared.vocab_size})
        with temp_dir() as tmp:
            log_artifact(run_id, Path(shutil.copy(prepared.vocab_path, Path(tmp) / self.VOCAB_FILE)), "data")

    def context(self, cfg: Any, prepared: corpora.PreparedCorpus, parent_id: str) -> None:
        return None

    def evaluation_parts(self, cfg: Any, prepared: corpora.PreparedCorpus) -> tuple[str, ...]:
        return cfg.level, cfg.corpus, prepared.content_hash[:16]


class Environment:
    """A Gymnasium environment, checked (discrete actions, Box observations) and described before any run."""

    def prepare(self, cfg: Any) -> environments.EnvSpec:
        return environments.describe_env(cfg)

    def report(self, cfg: Any, spec: environments.EnvSpec, run_id: str) -> None:
        log_params(run_id, {"env": spec._asdict()})

    def context(self, cfg: Any, spec: environments.EnvSpec, parent_id: str) -> None:
        return None

    def evaluation_parts(self, cfg: Any, spec: environments.EnvSpec) -> tuple[str, ...]:
        return cfg.env_id, cfg.obs_mode


IMAGES, CORPUS, ENVIRONMENT = Images(), Corpus(), Environment()
