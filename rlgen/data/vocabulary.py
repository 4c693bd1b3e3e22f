"""Tokens and the vocabulary of the language models, and text generation with either."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch

from models import lm

VOCAB_FORMAT = 1  # written into every vocabulary file
UNK, EOS = "<unk>", "<eos>"


def tokenize(text: str, level: str) -> list[str]:
    """char: every character, newline included; word: whitespace-split words with `<eos>` ending each line."""
    if level == "char":
        return list(text)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    return [token for line in lines for token in (*line.split(), EOS)]


class Vocabulary:
    """Token <-> id, most frequent first. Word level maps unknown words to `<unk>`; char level refuses them."""

    def __init__(self, tokens: list[str], level: str) -> None:
        self.tokens, self.level = list(tokens), level
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("a vocabulary lists each token once")

    @classmethod
    def build(cls, streams: Iterable[list[str]], level: str) -> Vocabulary:
        """From token streams: by descending count, ties in code-point order; word level always has <unk> and <eos>."""
        counts: Counter[str] = Counter()
        for stream in streams:
            counts.update(stream)
        tokens = sorted(counts, key=lambda t: (-counts[t], t))
        if level == "word":
            tokens += [t for t in (UNK, EOS) if t not in counts]
        return cls(tokens, level)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> list[int]:
        """Ids of tokens; an unknown word becomes <unk>, an unknown character is an error."""
        if self.level == "word":
            unk = self.index[UNK]
            return [self.index.get(t, unk) for t in tokens]
        missing = sorted({t for t in tokens if t not in self.index})
        if missing:
            raise ValueError(
                f"characters {''.join(missing)!r} are not in the vocabulary of {len(self)} characters "
                f"({''.join(sorted(self.tokens))!r}); leave them out"
            )
        return [self.index[t] for t in tokens]

    def encode_prompt(self, text: str) -> list[int]:
        """A prompt's ids: its characters, or its words with <eos> only between lines (not after the last)."""
        if self.level == "char":
            return self.encode(list(text))
        return self.encode(tokenize(text, "word")[:-1] if text.strip() else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids: characters joined; words joined by spaces, <eos> as a newline."""
        tokens = [self.tokens[i] for i in ids]
        if self.level == "char":
            return "".join(tokens)
        out: list[str] = []
        for token in tokens:
            if token == EOS:
                out.append("\n")
            else:
                out.extend((" ", token) if out and out[-1] != "\n" else (token,))
        return "".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"format": VOCAB_FORMAT, "level": self.level, "tokens": self.tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        """The inverse of to_json."""
        try:
            return cls(data["tokens"], data["level"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"not an rlgen vocabulary ({err.__class__.__name__}: {err}); expected {{'level', 'tokens'}}"
            ) from None


def generate(
    model: lm.RNNModel | torch.jit.ScriptModule,
    vocab: Vocabulary,
    prompt: str,
    n: int,
    temperature: float,
    seed: int,
    top_k: int = 0,
) -> str:
    """The prompt and n sampled tokens after it, as text; `model` is an RNNModel or its TorchScript export."""
    return continue_text(model, vocab, prompt, n, temperature, seed, top_k)[0]


def continue_text(
    model: lm.RNNModel | torch.jit.ScriptModule,
    vocab: Vocabulary,
    prompt: str,
    n: int,
    temperature: float,
    seed: int,
    top_k: int = 0,
) -> tuple[str, list[int]]:
    """The prompt and n sampled tokens after it, as text, and the sampled token ids; the same seed gives the same.

    An empty prompt starts from a line break (a newline character, or <eos>), which is left out of the text.
    """
    ids = vocab.encode_prompt(prompt) or vocab.encode(["\n" if vocab.level == "char" else EOS])
    device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    out = lm.sample(
        model, torch.tensor(ids, device=device), n, model.initial_state(1), temperature, top_k, seed
    )  # (n,)
    model.train(was_training)
    sampled = out.tolist()
    text = vocab.decode(sampled)
    return prompt + ("" if vocab.level == "char" or not prompt or text.startswith("\n") else " ") + text, sampled
