"""Recurrent language models: streams, truncated BPTT, the model, training, evaluation, sampling, export.

Torch only. The model follows PyTorch's word_language_model example (Zaremba et al. 2014, "Recurrent
Neural Network Regularization"): Embedding -> dropout -> LSTM/GRU/tanh-RNN (dropout between layers) ->
dropout -> Linear decoder, optionally tied to the embedding (Press & Wolf 2017), or an adaptive softmax
(Grave et al. 2017). Every cell carries an explicit state (h, c), each (L, B, H); GRU and tanh-RNN
pass c through unchanged, so training, sampling and the exported module share one signature.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

State = tuple[Tensor, Tensor]  # (h, c), each (L, B, H)
StepFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]  # (tokens, h, c) -> (log-probs, h, c)


# --------------------------------------------------------------------------- streams


def batchify(tokens: Tensor, batch_size: int) -> Tensor:
    """(N,) token ids -> (B, N // B): B parallel streams, each a contiguous stretch; the tail is dropped."""
    length = tokens.numel() // batch_size
    if length < 2:
        raise ValueError(
            f"{tokens.numel()} tokens cannot fill {batch_size} streams of at least 2 tokens; lower the batch size"
        )
    return tokens[: length * batch_size].view(batch_size, length)


def bptt_windows(streams: Tensor, bptt: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive (inputs, targets) windows, each (B, T) with T <= bptt; targets are the inputs shifted by one."""
    length = streams.size(1)
    for start in range(0, length - 1, bptt):
        t = min(bptt, length - 1 - start)
        yield streams[:, start : start + t], streams[:, start + 1 : start + 1 + t]


def windows_per_pass(streams: Tensor, bptt: int) -> int:
    """How many windows bptt_windows yields."""
    return math.ceil((streams.size(1) - 1) / bptt)


# --------------------------------------------------------------------------- the model


class LSTMCore(nn.Module):
    """nn.LSTM with the state as two tensors."""

    def __init__(self, rnn: nn.LSTM) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, (h, c) = self.rnn(x, (h, c))
        return out, h, c


class PassCCore(nn.Module):
    """nn.GRU or tanh nn.RNN; c passes through unchanged."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, h = self.rnn(x, h)
        return out, h, c


class FullSoftmax(nn.Module):
    """A Linear decoder over the whole vocabulary."""

    def __init__(self, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.decoder = nn.Linear(hidden, vocab_size)

    def log_prob(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.decoder(x), dim=-1)  # (N, V)

    def loss(self, x: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(self.decoder(x), targets)  # mean NLL in nats


class AdaptiveSoftmax(nn.Module):
    """Adaptive softmax (Grave et al. 2017, as torch.nn.AdaptiveLogSoftmaxWithLoss, which TorchScript cannot compile):
    the `cutoffs[0]` most frequent tokens and one logit per tail cluster share a small head; a rare token's
    log-probability is its cluster's head log-probability plus its log-probability within the cluster, whose
    projection is `div_value` times narrower per cluster. Needs the vocabulary sorted by frequency."""

    def __init__(self, hidden: int, vocab_size: int, cutoffs: tuple[int, ...], div_value: float = 4.0) -> None:
        super().__init__()
        if not cutoffs or cutoffs[-1] >= vocab_size:
            raise ValueError(
                f"adaptive-softmax cutoffs {list(cutoffs)} must all be below the vocabulary size {vocab_size}; "
                "lower them (e.g. --set cutoffs=2000,10000 for WikiText-2)"
            )
        self.bounds = [*cutoffs, vocab_size]
        self.shortlist = cutoffs[0]
        self.head = nn.Linear(hidden, self.shortlist + len(cutoffs), bias=False)
        self.tail = nn.ModuleList(
            nn.Sequential(
                nn.Linear(hidden, max(1, int(hidden // div_value ** (i + 1))), bias=False),
                nn.Linear(max(1, int(hidden // div_value ** (i + 1))), self.bounds[i + 1] - self.bounds[i], bias=False),
            )
            for i in range(len(cutoffs))
        )

    def log_prob(self, x: Tensor) -> Tensor:
        head = F.log_softmax(self.head(x), dim=-1)  # (N, shortlist + clusters)
        parts = [head[:, : self.shortlist]]
        for i, cluster in enumerate(self.tail):
            parts.append(
                F.log_softmax(cluster(x), dim=-1) + head[:, self.shortlist + i].unsqueeze(1)
            )  # (N, cluster size)
        return torch.cat(parts, dim=1)  # (N, V)

    def loss(self, x: Tensor, targets: Tensor) -> Tensor:
        head = F.log_softmax(self.head(x), dim=-1)  # (N, shortlist + clusters)
        head_index = targets.clone()
        for i in range(len(self.tail)):
            head_index[(targets >= self.bounds[i]) & (targets < self.bounds[i + 1])] = self.shortlist + i
        logp = head.gather(1, head_index.unsqueeze(1)).squeeze(1)  # (N,)
        for i, cluster in enumerate(self.tail):
            rows = ((targets >= self.bounds[i]) & (targets < self.bounds[i + 1])).nonzero().squeeze(1)
            if rows.numel():  # only the rows whose target lies in this cluster pay for its projection
                within = F.log_softmax(cluster(x[rows]), dim=-1).gather(
                    1, (targets[rows] - self.bounds[i]).unsqueeze(1)
                )
                logp = logp.index_add(0, rows, within.squeeze(1))
        return -logp.mean()


class RNNModel(nn.Module):
    """Embedding -> recurrent layers -> decoder; forward gives log-probabilities and the new state."""

    def __init__(
        self,
        vocab_size: int,
        embedding: int,
        hidden: int,
        layers: int,
        cell: str = "lstm",
        dropout: float = 0.2,
        tie_weights: bool = False,
        cutoffs: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        rnns = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
        if cell not in rnns:
            raise ValueError(f"unknown cell {cell!r}; use lstm, gru or rnn")
        if tie_weights and (embedding != hidden or cutoffs):
            raise ValueError("tie_weights needs embedding == hidden and the full softmax")
        self.layers, self.hidden = layers, hidden
        self.encoder = nn.Embedding(vocab_size, embedding)
        self.drop = nn.Dropout(dropout)
        rnn = rnns[cell](embedding, hidden, layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.core = LSTMCore(rnn) if cell == "lstm" else PassCCore(rnn)
        self.head = AdaptiveSoftmax(hidden, vocab_size, cutoffs) if cutoffs else FullSoftmax(hidden, vocab_size)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)  # as the classic example
        if isinstance(self.head, FullSoftmax):
            nn.init.uniform_(self.head.decoder.weight, -0.1, 0.1)
            nn.init.zeros_(self.head.decoder.bias)
            if tie_weights:
                self.head.decoder.weight = self.encoder.weight

    def initial_state(self, batch: int) -> State:
        """Zeros (L, B, H) for h and c, on the model's device."""
        weight = self.encoder.weight
        return (weight.new_zeros(self.layers, batch, self.hidden), weight.new_zeros(self.layers, batch, self.hidden))

    def features(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The top layer's outputs (B, T, H) after dropout, and the new state."""
        out, h, c = self.core(self.drop(self.encoder(tokens)), h, c)  # tokens (B, T) -> (B, T, E) -> (B, T, H)
        return self.drop(out), h, c

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, h, c = self.features(tokens, h, c)
        logp = self.head.log_prob(out.reshape(-1, out.size(-1)))  # (B * T, V)
        return logp.view(out.size(0), out.size(1), -1), h, c  # (B, T, V)

    def nll(self, tokens: Tensor, targets: Tensor, state: State) -> tuple[Tensor, State]:
        """Mean negative log-likelihood (nats per token) of targets (B, T) given tokens (B, T), and the new state."""
        out, h, c = self.features(tokens, *state)
        return self.head.loss(out.reshape(-1, out.size(-1)), targets.reshape(-1)), (h, c)


class LMExport(nn.Module):
    """The scripted interface: forward(tokens (B, T), h, c) -> (log-probs (B, T, V), h, c); T = 1 steps.

    `log_probs` and `state` return forward's parts as single tensors (for the parity check), and
    `initial_state(batch)` gives the zero state.
    """

    def __init__(self, model: RNNModel) -> None:
        super().__init__()
        self.model = model
        self.layers, self.hidden = model.layers, model.hidden

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.model(tokens, h, c)

    @torch.jit.export
    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(self.layers, batch, self.hidden)
        return zeros, zeros.clone()

    @torch.jit.export
    def log_probs(self, tokens: Tensor, h: Tensor, c: Tensor) -> Tensor:
        return self.forward(tokens, h, c)[0]

    @torch.jit.export
    def state(self, tokens: Tensor, h: Tensor, c: Tensor) -> Tensor:
        _, h, c = self.forward(tokens, h, c)
        return torch.stack([h, c])  # (2, L, B, H)


# --------------------------------------------------------------------------- training and evaluation


def detach(state: State) -> State:
    """Cut the graph at the window boundary: the state's values carry on, its history does not."""
    return state[0].detach(), state[1].detach()


def train_step(
    model: RNNModel, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, state: State, clip: float
) -> tuple[dict[str, Tensor], State]:
    """One truncated-BPTT update on a window (B, T); returns tensor stats and the detached new state."""
    loss, state = model.nll(x, y, detach(state))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    stats = {"train/loss": loss.detach()}
    if clip > 0:
        stats["train/grad_norm"] = nn.utils.clip_grad_norm_(model.parameters(), clip)  # global norm over all parameters
    optimizer.step()
    return stats, detach(state)


@torch.no_grad()
def evaluate(model: RNNModel, streams: Tensor, bptt: int) -> float:
    """Mean negative log-likelihood in nats per token over streams (B, N), the state carried across windows."""
    was_training = model.training
    model.eval()
    state = model.initial_state(streams.size(0))
    total = torch.zeros((), dtype=torch.float64, device=streams.device)
    count = 0
    for x, y in bptt_windows(streams, bptt):
        loss, state = model.nll(x, y, state)
        total += loss.double() * y.numel()
        count += y.numel()
    model.train(was_training)
    return float(total) / count


# --------------------------------------------------------------------------- sampling


def draw(logp: Tensor, temperature: float, top_k: int, generator: torch.Generator) -> Tensor:
    """One token id (1,) from log-probabilities (V,): temperature 0 is greedy, top_k > 0 keeps the k likeliest."""
    if temperature <= 0:
        return logp.argmax().view(1)
    scores = logp.float() / temperature
    if 0 < top_k < scores.numel():
        kth = torch.topk(scores, top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)


@torch.no_grad()
def sample(
    step: StepFn, prompt: Tensor, n: int, state: State, temperature: float = 1.0, top_k: int = 0, seed: int = 0
) -> Tensor:
    """n token ids (n,) continuing prompt (P,) from state, with `step` the model or its TorchScript export."""
    if prompt.numel() == 0:
        raise ValueError("the prompt is empty; give at least one token")
    generator = torch.Generator(device=prompt.device).manual_seed(seed)
    logp, h, c = step(prompt.view(1, -1), *state)  # (1, P, V)
    out = []
    for _ in range(n):
        token = draw(logp[0, -1], temperature, top_k, generator)
        out.append(token)
        logp, h, c = step(token.view(1, 1), h, c)
    return torch.cat(out) if out else prompt.new_zeros(0)
