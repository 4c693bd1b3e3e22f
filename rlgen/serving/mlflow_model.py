"""An exported model as an MLflow 3 model: a LoggedModel of the training run, with the pyfunc interface of its
family (defined from code: rlgen/serving/code/), a signature, an input example, the TorchScript file and the .pt2
programs as artifacts, and the run's evaluation metrics linked to it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from rlgen.serving.integrity import PENDING, digest_tags, sha256
from rlgen.tracking.registry import DIGEST_TAG
from rlgen.tracking.store import client, tracking_uri

CODE = Path(__file__).parent / "code"
CODE_FILES = {"play": "policy.py", "sample": "images.py", "score": "energy.py", "generate": "text.py"}
LEFT_OUT = ("vocab", "config")  # too big for the MLmodel file; they stay inside the TorchScript file


class LoggedModelRef(NamedTuple):
    model_id: str
    uri: str  # models:/<model_id>


def signature(interface: str, metadata: dict[str, Any]) -> tuple[ModelSignature, Any]:
    """The signature and an input example of an interface, for a model with this metadata."""
    if interface == "play":
        dtype = np.uint8 if metadata["env"]["obs_mode"] == "pixels" else np.float32
        shape = tuple(metadata["obs_shape"])
        inputs = Schema([TensorSpec(np.dtype(dtype), (-1, *shape))])
        outputs = Schema([TensorSpec(np.dtype(np.int64), (-1,))])
        params = ParamSchema([ParamSpec("q_values", "boolean", False)])
        return ModelSignature(inputs, outputs, params), np.zeros((2, *shape), dtype=dtype)
    if interface == "sample":
        columns = [ColSpec("long", "seed"), ColSpec("long", "label", required=False)]
        columns.append(ColSpec(Array("double"), "z", required=False))
        example = pd.DataFrame({"seed": [0, 1], **({"label": [0, 1]} if metadata["conditional"] else {})})
        return ModelSignature(_schema(columns), Schema([TensorSpec(np.dtype(np.uint8), (-1, 28, 28))])), example
    if interface == "score":
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, 28, 28))])
        return ModelSignature(inputs, Schema([TensorSpec(np.dtype(np.float32), (-1,))])), np.zeros(
            (2, 28, 28), np.float32
        )
    if interface == "generate":
        optional = {"tokens": "long", "temperature": "double", "top_k": "long", "seed": "long"}
        columns = [ColSpec("string", "prompt"), *(ColSpec(kind, key, required=False) for key, kind in optional.items())]
        outputs = Schema([ColSpec("string", "text"), ColSpec(Array("long"), "token_ids")])
        prompt = "The" if metadata["level"] == "word" else "ROMEO:"
        return ModelSignature(_schema(columns), outputs), pd.DataFrame(
            {"prompt": [prompt], "tokens": [20], "seed": [0]}
        )
    raise ValueError(f"unknown model interface {interface!r}; known: {', '.join(CODE_FILES)}")


def _schema(columns: list[ColSpec]) -> Schema:
    return Schema(list[ColSpec | TensorSpec](columns))


def log_model(
    run_id: str, interface: str, files: list[Path], metadata: dict[str, Any], step: int, name: str
) -> LoggedModelRef:
    """Log `files` (the TorchScript file first) as the MLflow model of training run `run_id`, linked to the run's
    metrics at `step` (its evaluation)."""
    mlflow.set_tracking_uri(tracking_uri())  # MLflow's model logging reads the process-wide URI
    mlflow_client = client()
    run = mlflow_client.get_run(run_id)
    tags = {"rlgen.interface": interface, "rlgen.family": str(metadata.get("family", "")), PENDING: "pending"}
    model = mlflow_client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id, tags=tags)
    artifacts = {"torchscript": str(files[0]), **{f.name: str(f) for f in files[1:]}}
    sig, example = signature(interface, metadata)
    torch_version, mlflow_version = torch.__version__.split("+")[0], mlflow.__version__
    Model.log(
        artifact_path=None,
        name=name,
        flavor=mlflow.pyfunc,
        run_id=run_id,
        model_id=model.model_id,
        step=step,
        python_model=str(CODE / CODE_FILES[interface]),
        artifacts=artifacts,
        signature=sig,
        input_example=example,
        metadata={k: v for k, v in metadata.items() if k not in LEFT_OUT},
        pip_requirements=[f"torch=={torch_version}", f"mlflow=={mlflow_version}", "numpy", "pandas", "rlgen"],
        flavor_name="python_model",
    )
    record_digests(model.model_id, files)
    return LoggedModelRef(model.model_id, f"models:/{model.model_id}")


def record_digests(model_id: str, files: list[Path]) -> None:
    """The SHA-256 of every file of the stored MLflow model as tags of its LoggedModel (register copies them onto
    the version); RuntimeError if an exported file was not stored as it was checked."""
    with tempfile.TemporaryDirectory() as tmp:
        stored = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_id}", dst_path=tmp))
        tags = digest_tags(stored)
        for file in files:
            key = f"{DIGEST_TAG}artifacts/{file.name}"
            if tags.get(key) != sha256(file):
                raise RuntimeError(f"the stored artifacts/{file.name} of model {model_id} differs from {file}")
    client().set_logged_model_tags(model_id, {**tags, PENDING: "recorded"})
