"""The model registry: versions, aliases, and what a model reference (NAME, NAME@ALIAS, NAME/VERSION, run id) is."""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.exceptions import MlflowException

from rlgen.tracking.artifacts import artifact_uri
from rlgen.tracking.secrets import mask_secrets
from rlgen.tracking.store import client, tracking_uri

log = logging.getLogger(__name__)
DIGEST_TAG = "rlgen.sha256."  # + a file's path in the model's folder: its SHA-256, on the LoggedModel and the version


class ModelVersion(NamedTuple):
    name: str
    version: str
    run_id: str
    source: str


def register_model(run_id: str, source: str, name: str, tags: dict[str, str] | None = None) -> ModelVersion:
    """Register a run's MLflow model (`models:/<model id>`), or an artifact folder of the run (a relative path), as
    a new version of model `name`."""
    mlflow = client()
    try:
        mlflow.create_registered_model(name, description="Trained and exported by rlgen.")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = source.removeprefix("models:/") if source.startswith("models:/") else None
    if model_id is None:
        source = artifact_uri(run_id, source)
    else:  # the digests recorded on the MLflow model at export go onto the version, where loaders check them
        logged = mlflow.get_logged_model(model_id).tags
        tags = {**(tags or {}), **{k: v for k, v in logged.items() if k.startswith(DIGEST_TAG)}}
    version = mlflow.create_model_version(name, source=source, run_id=run_id, tags=tags or {}, model_id=model_id)
    return ModelVersion(name, str(version.version), run_id, str(version.source))


def wait_for_earlier_versions(name: str, version: str, tag: str, marker: str = "family", window: float = 300.0) -> None:
    """Wait until each earlier version of `name` that rlgen registered (tag `marker`) has `tag`.

    Processes that share a store (two pipeline runs at once, on one embedded store or one server) then
    act on one model's versions in version order. Only versions registered up to `window` seconds
    before `version` count, and a version whose process died before tagging it holds the others up
    for at most `window` seconds.
    """
    mlflow = client()
    created = mlflow.get_model_version(name, version).creation_timestamp
    deadline = time.monotonic() + window
    while True:
        waiting = [
            v.version
            for v in mlflow.search_model_versions(f"name='{name}'")
            if int(v.version) < int(version)
            and marker in v.tags
            and tag not in v.tags
            and created - v.creation_timestamp < window * 1000
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            log.warning(
                "%s/%s: going on without version(s) %s, still without tag %s after %.0f s",
                name,
                version,
                ", ".join(waiting),
                tag,
                window,
            )
            return
        time.sleep(1.0)


def alias_version(name: str, alias: str) -> MlflowModelVersion | None:
    """The version of `name` that holds `alias`, or None (also when the model does not exist)."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    """Point `alias` of registered model `name` at `version` (moving it from any other version)."""
    client().set_registered_model_alias(name, alias, version)


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    """Set tags on one model version."""
    mlflow = client()
    for key, value in tags.items():
        mlflow.set_model_version_tag(name, version, key, str(value))


def model_versions(name: str) -> list[MlflowModelVersion]:
    """Every version of registered model `name` (none if it does not exist)."""
    return list(client().search_model_versions(f"name='{name}'"))


def _version(name: str, alias: str, number: str) -> MlflowModelVersion:
    """NAME@ALIAS, NAME/VERSION, or NAME's champion (else its latest); MlflowException or ValueError if none."""
    mlflow = client()
    if alias:
        return mlflow.get_model_version_by_alias(name, alias)
    if number:
        return mlflow.get_model_version(name, number)
    model = mlflow.get_registered_model(name)
    if "champion" in (model.aliases or {}):
        return mlflow.get_model_version(name, model.aliases["champion"])
    return max(mlflow.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def resolve_model(reference: str) -> tuple[str, str | None]:
    """(run_id, artifact_path) of a model given as NAME, NAME@ALIAS, NAME/VERSION or a run id.

    A bare NAME means its `champion` alias if set, else its latest version. For a run id the
    artifact path is None: the caller knows which folder its family exports to.
    """
    mlflow = client()
    name, _, alias = reference.partition("@")
    name, _, number = name.partition("/")
    try:
        version = _version(name, alias, number)
        if version.run_id is None:
            raise LookupError(f"{name} version {version.version} has no run: it was not registered by rlgen")
        run_root = str(mlflow.get_run(version.run_id).info.artifact_uri).rstrip("/") + "/"
        return version.run_id, str(version.source).removeprefix(run_root)
    except (MlflowException, ValueError):
        pass
    try:
        mlflow.get_run(reference)
    except MlflowException:
        registered = {m.name: m for m in mlflow.search_registered_models()}
        known = ", ".join(sorted(registered)) or "none yet"
        if name in registered and (alias or number):  # the model exists; its alias or version does not
            aliases = (
                ", ".join(f"{a} (version {v})" for a, v in sorted((registered[name].aliases or {}).items())) or "none"
            )
            numbers = ", ".join(
                sorted((str(v.version) for v in mlflow.search_model_versions(f"name='{name}'")), key=int)
            )
            known = f"{known}; {name} has aliases: {aliases}; versions: {numbers}"
        raise LookupError(
            f"No registered model or run called {reference!r} in {mask_secrets(tracking_uri())}; "
            f"registered models: {known}. Pass NAME, NAME@ALIAS, NAME/VERSION or a run id."
        ) from None
    return reference, None


def model_uri(reference: str) -> str | None:
    """The MLflow model URI of a reference (NAME, NAME@ALIAS, NAME/VERSION or a run id): `models:/NAME/VERSION` or
    `models:/<model id>` (a run's MLflow model); None for a version registered as a bare folder of files (rlgen
    before its models were MLflow models). LookupError, listing what exists, when nothing matches."""
    mlflow = client()
    name, _, alias = reference.partition("@")
    name, _, number = name.partition("/")
    try:
        version = _version(name, alias, number)
        return f"models:/{name}/{version.version}" if str(version.source).startswith("models:/") else None
    except (MlflowException, ValueError):
        pass
    try:
        run = mlflow.get_run(reference)
    except MlflowException:
        resolve_model(reference)  # raises the LookupError that lists the registered models
        raise
    found = mlflow.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{reference}'")
    return f"models:/{found[0].model_id}" if found else None
