"""The one way rlgen loads a model: as an MLflow pyfunc model (`mlflow.pyfunc.load_model`), whatever names it.

A reference is NAME (its champion, else its latest version), NAME@ALIAS, NAME/VERSION, a run id (that run's MLflow
model), or an exported TorchScript file (.pt). Two cases have no MLflow model to load, and go through the same
interface class over the TorchScript file instead: a bare file, and a version registered by rlgen before its
models were MLflow models (a folder of files); re-running the flow registers a version that MLflow can serve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import mlflow

from rlgen.export.torchscript import load_scripted
from rlgen.registry import FAMILIES
from rlgen.serving.integrity import download_model, verify, version_tags
from rlgen.serving.interfaces import INTERFACES
from rlgen.tracking.artifacts import download, temp_dir
from rlgen.tracking.registry import model_uri, resolve_model
from rlgen.tracking.store import tracking_uri

log = logging.getLogger(__name__)
FILES = {"play": "policy/policy.pt"}  # where a pre-MLflow-model version or run keeps its TorchScript file
DEFAULT_FILE = "model/model.pt"
KINDS = {"play": "policy", "sample": "image model", "score": "energy model", "generate": "language model"}


class UsableModel(NamedTuple):
    predict: Callable[..., Any]  # (data, params=None) -> predictions, as `mlflow.pyfunc.PyFuncModel.predict`
    metadata: dict[str, Any]  # what rlgen recorded about it (interface, family, shapes, ...)
    source: str  # what was loaded: models:/..., or a file


def load(reference: str, interface: str) -> UsableModel:
    """The model `reference` names, with `interface` (play, sample, score, generate); ValueError if it has another."""
    path = Path(reference)
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"no TorchScript file at {path}")
        return _from_file(path, interface, reference)
    uri = model_uri(reference)
    if uri is None:  # registered before rlgen's models were MLflow models
        return _from_bare_version(reference, interface)
    mlflow.set_tracking_uri(tracking_uri())
    what, tags = version_tags(uri)
    with temp_dir() as tmp:
        local = download_model(uri, what, Path(tmp))
        verify(local, tags, what)  # before MLflow runs the model's code file
        model = mlflow.pyfunc.load_model(str(local))
    metadata = dict(model.metadata.metadata or {})
    check(interface, metadata, reference)
    return UsableModel(model.predict, metadata, uri)


def _from_file(path: Path, interface: str, reference: str) -> UsableModel:
    _, metadata = load_scripted(path)
    check(interface, metadata, reference)
    model = INTERFACES[interface]().load(path)

    def predict(data: Any, params: dict[str, Any] | None = None) -> Any:
        return model.predict(None, data, params)

    return UsableModel(predict, metadata, str(path))


def _from_bare_version(reference: str, interface: str) -> UsableModel:
    run_id, folder = resolve_model(reference)
    log.warning(
        "%s predates rlgen's MLflow models (a bare folder of files): loading its TorchScript file; run its flow again "
        "to register a version that mlflow.pyfunc and `mlflow models serve` can load",
        reference,
    )
    file = FILES.get(interface, DEFAULT_FILE)
    artifact = f"{folder}/{Path(file).name}" if folder else file
    with temp_dir() as tmp:
        local = download(run_id, artifact, Path(tmp))
        return _from_file(local, interface, reference)


def check(interface: str, metadata: dict[str, Any], reference: str) -> None:
    """Refuse, with what to use instead, a model whose interface is not the one a command needs."""
    family = metadata.get("family")
    found = metadata.get("interface") or _interface_of(metadata)
    if found is None and family in FAMILIES:
        found = FAMILIES[family].consumer
    if found == interface:
        return
    families = ", ".join(f.name for f in FAMILIES.values() if f.consumer == interface)
    instead = f"; use `rlgen {found}` for it" if found in INTERFACES else ""
    raise ValueError(
        f"{reference!r} is not an exported {KINDS[interface]} (family: {family!r}): `rlgen {interface}` takes a "
        f"model of family {families}{instead}"
    )


def _interface_of(metadata: dict[str, Any]) -> str | None:
    """The interface of a file exported before rlgen recorded it, from what its metadata holds."""
    if "env" in metadata and "n_actions" in metadata:
        return "play"
    if metadata.get("module") == "energy":
        return "score"
    if "vocab" in metadata:
        return "generate"
    if "latent_dim" in metadata:
        return "sample"
    return None
