"""The pyfunc models rlgen registers, one per interface (what a model does, whichever family made it):

- `Policy`: observations (N, *obs_shape) -> greedy actions (N,), or Q-values (N, A) with `params={"q_values": True}`;
- `ImageGenerator`: a table with one row per image (`seed`, optional `label`, optional latent vector `z`) ->
  uint8 images (N, 28, 28), the same seed giving the same image every time;
- `Energy`: images (N, 28, 28) in [0, 1] -> energies (N,), lower = likelier;
- `Text`: a table with one row per request (`prompt`, `tokens`, `temperature`, `top_k`, `seed`) -> the text and the
  sampled token ids.

Each runs the TorchScript file stored inside the MLflow model (artifact `torchscript`; the `.pt2` program sits
beside it), with rlgen's metadata embedded in that file. A request the model cannot answer raises an
MlflowException with INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400 and the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from rlgen.data.vocabulary import Vocabulary, continue_text
from rlgen.export.torchscript import load_scripted
from rlgen.serving.integrity import check_model_folder

MAX_IMAGES = 1024  # per request
MAX_TOKENS = 10_000  # per generated text
MAX_TEXTS = 64  # rows per request


def bad_request(message: str) -> MlflowException:
    """The error of a request the model cannot answer: HTTP 400 with `message` when served."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class RlgenModel(PythonModel):
    """What the interfaces share: the TorchScript module and its metadata, loaded from the model's artifacts."""

    interface: ClassVar[str] = ""
    _skip_type_hint_validation: ClassVar[bool] = True  # MLflow: the signature is given, do not convert by type hints
    module: torch.jit.ScriptModule
    metadata: dict[str, Any]

    def load_context(self, context: PythonModelContext) -> None:
        path = Path(context.artifacts["torchscript"])
        check_model_folder(path.parents[1])  # the model's folder: artifacts/<file> sits in it
        self.load(path)

    def load(self, path: Path) -> RlgenModel:
        """Load the exported TorchScript file at `path` (for a model stored as a bare file)."""
        self.module, self.metadata = load_scripted(path)
        return self


class Policy(RlgenModel):
    interface = "play"

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a signature
        shape = tuple(self.metadata["obs_shape"])
        obs = np.asarray(model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input)
        if obs.ndim == len(shape):
            obs = obs[None]
        if obs.shape[1:] != shape:
            raise bad_request(
                f"observations have shape {obs.shape[1:]}; this policy takes (N, {', '.join(map(str, shape))})"
            )
        if not np.issubdtype(obs.dtype, np.number):
            raise bad_request(f"observations must be numbers, got {obs.dtype}")
        with torch.no_grad():
            tensor = torch.as_tensor(obs)
            if (params or {}).get("q_values"):
                return self.module.q_values(tensor).numpy()  # (N, A) float32
            return self.module(tensor).numpy()  # (N,) int64


class ImageGenerator(RlgenModel):
    interface = "sample"

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a signature
        rows = pd.DataFrame(model_input)
        if "seed" not in rows:
            raise bad_request("each row needs a `seed` (an integer): one row per image")
        if len(rows) > MAX_IMAGES:
            raise bad_request(f"{len(rows)} images asked for; at most {MAX_IMAGES} per request")
        latent_dim, classes = int(self.metadata["latent_dim"]), int(self.metadata["n_classes"])
        labels = self._labels(rows, classes)
        z = torch.stack([self._latent(row, latent_dim) for row in rows.itertuples(index=False)]) if len(rows) else None
        if z is None:
            return np.zeros((0, 28, 28), dtype=np.uint8)
        with torch.no_grad():
            images = self.module(z, labels)  # (N, 1, 28, 28) in [0, 1]
        return images.mul(255).round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()  # (N, 28, 28)

    def _labels(self, rows: pd.DataFrame, classes: int) -> torch.Tensor:
        given = rows["label"] if "label" in rows else pd.Series([None] * len(rows), dtype=object)
        if not self.metadata["conditional"]:
            if given.notna().any():
                raise bad_request(f"{self.metadata.get('variant')} is unconditional: leave `label` out")
            return torch.zeros(len(rows), dtype=torch.long)
        cycled = pd.Series(np.arange(len(rows)) % classes, index=rows.index)
        labels = given.where(given.notna(), cycled).astype("int64")
        if ((labels < 0) | (labels >= classes)).any():
            bad = sorted(set(labels[(labels < 0) | (labels >= classes)].tolist()))
            raise bad_request(f"unknown label(s) {bad}; this model knows classes 0..{classes - 1}")
        return torch.tensor(labels.to_numpy())

    def _latent(self, row: Any, latent_dim: int) -> torch.Tensor:
        z = getattr(row, "z", None)
        if z is not None and not (isinstance(z, float) and np.isnan(z)):
            vector = torch.as_tensor(np.asarray(z, dtype=np.float32))
            if vector.shape != (latent_dim,):
                raise bad_request(f"a latent vector `z` has {vector.numel()} values; this model takes {latent_dim}")
            return vector
        return torch.randn(latent_dim, generator=torch.Generator().manual_seed(int(row.seed)))


class Energy(RlgenModel):
    interface = "score"

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a signature
        images = np.asarray(model_input, dtype=np.float32)
        if images.ndim == 3:
            images = images[:, None]
        if images.shape[1:] != (1, 28, 28):
            raise bad_request(f"images have shape {images.shape[1:]}; this model takes (N, 28, 28) in [0, 1]")
        if len(images) > MAX_IMAGES:
            raise bad_request(f"{len(images)} images sent; at most {MAX_IMAGES} per request")
        with torch.no_grad():
            return self.module(torch.as_tensor(images)).numpy()  # (N,)


class Text(RlgenModel):
    interface = "generate"
    DEFAULTS: ClassVar[dict[str, Any]] = {"tokens": 100, "temperature": 0.8, "top_k": 40, "seed": 0}

    def load(self, path: Path) -> RlgenModel:
        super().load(path)
        self.vocab = Vocabulary.from_json(self.metadata["vocab"])
        return self

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a signature
        rows = pd.DataFrame(model_input)
        if "prompt" not in rows:
            raise bad_request("each row needs a `prompt` (a string, possibly empty)")
        if len(rows) > MAX_TEXTS:
            raise bad_request(f"{len(rows)} texts asked for; at most {MAX_TEXTS} per request")
        out = []
        for row in rows.to_dict("records"):
            request = {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and np.isnan(v))}
            request = {**self.DEFAULTS, **request}
            tokens, temperature, top_k = int(request["tokens"]), float(request["temperature"]), int(request["top_k"])
            if not 0 <= tokens <= MAX_TOKENS:
                raise bad_request(f"tokens={tokens}; ask for 0 to {MAX_TOKENS}")
            if temperature < 0 or top_k < 0:
                raise bad_request(f"temperature={temperature} and top_k={top_k} must be >= 0 (0: greedy, no cut)")
            try:
                text, ids = continue_text(
                    self.module, self.vocab, str(request["prompt"]), tokens, temperature, int(request["seed"]), top_k
                )
            except ValueError as err:  # a character outside the vocabulary
                raise bad_request(str(err)) from None
            out.append({"text": text, "token_ids": ids})
        return pd.DataFrame(out, columns=["text", "token_ids"])


INTERFACES: dict[str, type[RlgenModel]] = {cls.interface: cls for cls in (Policy, ImageGenerator, Energy, Text)}
