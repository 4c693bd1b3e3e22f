"""The language model's trainer: truncated BPTT over parallel streams, the state carried across windows.

It validates every `eval_every` windows (default once per epoch) and at the end, anneals the learning rate
when validation does not improve, stops after `patience` validations without improvement, and keeps the
best weights. Its loop position (epoch, window, carried state, best weights, counters) is in its state, so
the driver's checkpoint continues a run bit for bit.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import torch
from torch import Tensor

from models import lm
from models.common import check_finite
from models.training import Report, Trainer
from rlgen.data.vocabulary import Vocabulary, generate
from rlgen.families.lm.config import LMConfig

log = logging.getLogger(__name__)


class LMTrainer(Trainer):
    """Windows of `bptt` tokens over (B, N) training streams; validation on the validation tokens (N,)."""

    unit = "batch"
    advice = "lower lr or clip harder"
    shown = ("train/loss", "val/loss", "perf/tokens_per_sec")

    def __init__(
        self,
        cfg: LMConfig,
        model: lm.RNNModel,
        train: Tensor,
        valid: Tensor,
        vocab: Vocabulary,
        prompt: str,
        device: torch.device,
    ) -> None:
        self.cfg, self.model, self.vocab, self.prompt = cfg, model, vocab, prompt
        self.name, self.log_every = cfg.registered_name, cfg.log_every
        if cfg.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda")
            )
        else:
            self.optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        self.streams = train
        self.windows = list(lm.bptt_windows(train, cfg.bptt))  # views: window i of every epoch
        self.per_epoch = len(self.windows)
        self.budget = min(cfg.epochs * self.per_epoch, cfg.max_steps or cfg.epochs * self.per_epoch)
        self.val_streams = lm.batchify(valid, min(cfg.eval_batch_size, max(1, valid.numel() // 2)))
        self.best, self.best_state, self.best_step, self.bad = math.inf, copy.deepcopy(model.state_dict()), 0, 0
        self.steps, self.tokens, self.epoch, self.window = 0, 0, 1, 0  # window: windows done in this epoch
        self.stopped, self.last_eval = False, 0
        self.state: lm.State = model.initial_state(train.size(0))
        self.first_tokens, self.eval_seconds, self.started = 0, 0.0, 0.0  # the clock starts at the first step
        self._reports: list[Report] = []
        model.train()

    def step(self) -> dict[str, Tensor]:
        if not self.started:
            self.started = time.perf_counter()
        if self.window == self.per_epoch:  # a new epoch starts from the zero state
            self.epoch, self.window, self.state = self.epoch + 1, 0, self.model.initial_state(self.streams.size(0))
        x, y = self.windows[self.window]
        stats, self.state = lm.train_step(self.model, self.optimizer, x, y, self.state, self.cfg.clip)
        self.steps, self.window, self.tokens = self.steps + 1, self.window + 1, self.tokens + y.numel()
        check_finite(stats, self.steps)  # before a validation would run on broken weights
        if self.steps % self.log_every == 0 or self.steps == self.budget:
            seconds = time.perf_counter() - self.started - self.eval_seconds
            lr = self.optimizer.param_groups[0]["lr"]
            rate = (self.tokens - self.first_tokens) / seconds
            self._reports.append(Report({"train/lr": lr, "train/epoch": self.epoch, "perf/tokens_per_sec": rate}))
        every = self.cfg.eval_every
        if (
            every
            and self.steps % every == 0
            or not every
            and self.window == self.per_epoch
            and self.steps < self.budget
        ):
            self.stopped = self._validate()
        if self.steps >= self.budget and self.last_eval != self.steps:
            self._validate()  # always at the end
        return stats

    def _validate(self) -> bool:
        """Validate, keep the best weights, anneal or stop; True means stop."""
        began, self.last_eval = time.perf_counter(), self.steps
        loss = lm.evaluate(self.model, self.val_streams, self.cfg.bptt)
        metrics = {
            "val/loss": loss,
            "val/perplexity": math.exp(min(loss, 50.0)),
            "val/bits_per_token": loss / math.log(2),
        }
        text = generate(self.model, self.vocab, self.prompt, self.cfg.sample_tokens, 0.8, self.cfg.seed)
        sample = f"step {self.steps}, validation loss {loss:.4f} nats/token, temperature 0.8\n\n{text}\n"
        self._reports.append(
            Report(metrics, texts={f"samples/epoch_{self.epoch:03d}_step_{self.steps:06d}.txt": sample})
        )
        self.eval_seconds += time.perf_counter() - began
        if loss < self.best:
            self.best, self.best_state, self.best_step, self.bad = (
                loss,
                copy.deepcopy(self.model.state_dict()),
                self.steps,
                0,
            )
            return False
        self.bad += 1
        for group in self.optimizer.param_groups:
            group["lr"] *= self.cfg.anneal
        lr = self.optimizer.param_groups[0]["lr"]
        log.info(
            "step %d: validation %.4f did not improve on %.4f; learning rate now %.3g", self.steps, loss, self.best, lr
        )
        return self.bad >= self.cfg.patience

    def reports(self) -> list[Report]:
        reports, self._reports = self._reports, []
        return reports

    def done(self) -> bool:
        return self.stopped or self.steps >= self.budget

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def loop_state(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "epoch": self.epoch,
            "window": self.window,
            "tokens": self.tokens,
            "state": tuple(s.cpu() for s in self.state),
            "best": self.best,
            "best_step": self.best_step,
            "bad": self.bad,
            "best_state": {k: v.cpu() for k, v in self.best_state.items()},
            "last_eval": self.last_eval,
            "stopped": self.stopped,
        }

    def load_loop_state(self, state: dict[str, Any]) -> None:
        device = self.streams.device
        self.steps, self.epoch, self.window, self.tokens = (
            state["steps"],
            state["epoch"],
            state["window"],
            state["tokens"],
        )
        h, c = (s.to(device) for s in state["state"])
        self.state = (h, c)
        self.best, self.best_step, self.bad = state["best"], state["best_step"], state["bad"]
        self.best_state = {k: v.to(device) for k, v in state["best_state"].items()}
        self.last_eval, self.stopped = state["last_eval"], state["stopped"]
        self.first_tokens, self.started, self.eval_seconds = self.tokens, 0.0, 0.0

    def finish(self) -> None:
        """Keep the weights of the best validation."""
        self.model.load_state_dict(self.best_state)

    def summary(self, seconds: float, first_step: int) -> dict[str, float]:
        train_seconds = seconds - self.eval_seconds
        return {
            "train/steps": self.steps,
            "train/epochs": self.epoch,
            "train/seconds": train_seconds,
            "train/tokens": self.tokens,
            "train/best_val_loss": self.best,
            "train/best_step": self.best_step,
            "train/stopped_early": float(self.stopped),
            "perf/tokens_per_sec": (self.tokens - self.first_tokens) / train_seconds,  # this session's tokens only
        }
