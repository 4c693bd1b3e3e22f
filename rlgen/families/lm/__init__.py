"""The LM family: LSTM (or GRU, tanh-RNN) language models at character and word level."""

from rlgen.families.lm.config import LMConfig
from rlgen.family import Branch, Family, Primary

QUICK = {"epochs": 1, "max_steps": 300}

FAMILY = Family(
    name="lm",
    config=LMConfig,
    summary="LSTM (or GRU, tanh-RNN) language model at character level (Tiny Shakespeare) or word level (WikiText-2).",
    primary=Primary(
        "eval/valid_loss", higher_is_better=False
    ),  # nats per token: orders perplexity and bits per char alike
    headline=("valid_loss", "valid_perplexity", "valid_bpc", "test_perplexity"),
    evaluation=("bptt", "eval_batch_size"),
    consumer="generate",
    tags=("level", "corpus", "cell"),
    branches={
        "lm-word": Branch({"level": "word", "corpus": "wikitext-2"}, QUICK, {"epochs": 40}),
        "lm-char": Branch({"level": "char", "corpus": "tinyshakespeare"}, QUICK, {"epochs": 30}),
    },
    implementation="rlgen.families.lm.train",
)

__all__ = ["FAMILY", "LMConfig"]
