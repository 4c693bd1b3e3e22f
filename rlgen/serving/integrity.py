"""The SHA-256 of every file of a registered model: recorded on its LoggedModel and its version (tags
`rlgen.sha256.<path>`), checked by every loader before a file is used, so a file planted in the store is refused."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

from rlgen.errors import ModelIntegrityError
from rlgen.tracking.registry import DIGEST_TAG

log = logging.getLogger(__name__)
UNCHECKED = {"registered_model_meta"}  # MLflow writes it into a model's folder as it downloads it
PENDING = "rlgen.sha256"  # a LoggedModel's tag while it is logged: MLflow loads it to check the example, unrecorded


def sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_tags(folder: Path) -> dict[str, str]:
    """{`rlgen.sha256.<path>`: hex} of every file under a model's folder (its path relative to the folder)."""
    return {
        f"{DIGEST_TAG}{p.relative_to(folder).as_posix()}": sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in UNCHECKED
    }


def recorded(tags: Mapping[str, str]) -> dict[str, str]:
    """{path: hex} of the digests among a version's (or a LoggedModel's) tags."""
    return {key.removeprefix(DIGEST_TAG): value for key, value in tags.items() if key.startswith(DIGEST_TAG)}


def verify(folder: Path, tags: Mapping[str, str], what: str, only: tuple[str, ...] = ()) -> bool:
    """Check the files under `folder` against the digests in `tags` (those under `only`, when given); raise
    ModelIntegrityError naming the file and `what` (the version) when one differs or is missing. False when `tags`
    hold no digest (a version registered before rlgen recorded them): nothing to check."""
    expected = {p: h for p, h in recorded(tags).items() if not only or p.startswith(only)}
    if not expected:
        return False
    for path, digest in sorted(expected.items()):
        file = folder / path
        if not file.is_file():
            raise ModelIntegrityError(
                f"{what}: its file {path} is missing from the store (looked in {folder}), though it was registered "
                f"with SHA-256 {digest[:12]}...; the store was changed after registration. Register the model again "
                "(run its flow), or pick another version"
            )
        found = sha256(file)
        if found != digest:
            raise ModelIntegrityError(
                f"{what}: its file {path} has SHA-256 {found[:12]}..., but {digest[:12]}... was recorded when it was "
                "registered: the file was changed in the store after registration and is not loaded. Register the "
                "model again (run its flow), or pick another version"
            )
    return True


def check_model_folder(folder: Path) -> None:
    """Check a downloaded MLflow model's files against the digests its LoggedModel holds in the tracking store
    (what a pyfunc model does as it loads, whoever loads it); a warning when the store has no record of it."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model
    from mlflow.tracking import MlflowClient

    model_id = Model.load(str(folder / "MLmodel")).model_id
    try:
        mlflow = MlflowClient()
        logged = mlflow.get_logged_model(str(model_id))
        versions = [
            v.version
            for v in mlflow.search_model_versions(f"name='{logged.name}'")
            if model_id in (v.model_id, str(v.source).removeprefix("models:/"))
        ]
    except MlflowException as err:
        log.warning("cannot check the files of model %s: the tracking store has no record of it (%s)", model_id, err)
        return
    what = ", ".join(f"{logged.name} version {v}" for v in versions) or f"model {logged.name} ({model_id})"
    if logged.tags.get(PENDING) != "pending" and not verify(folder, logged.tags, what):
        log.warning("%s was registered before rlgen recorded SHA-256 digests: its files are not checked", what)


def version_tags(uri: str) -> tuple[str, dict[str, str]]:
    """What a models:/NAME/VERSION or models:/<model id> URI is (for messages), and the tags holding its digests."""
    from rlgen.tracking.store import client

    mlflow = client()
    name, _, version = uri.removeprefix("models:/").partition("/")
    if version:
        return f"{name} version {version}", dict(mlflow.get_model_version(name, version).tags)
    logged = mlflow.get_logged_model(name)
    return f"model {logged.name} ({name})", dict(logged.tags)


def download_model(uri: str, what: str, dst: Path) -> Path:
    """The MLflow model at `uri` downloaded into `dst`; ModelIntegrityError, naming where it was looked for, when its
    files are gone from the artifact store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from rlgen.tracking.store import client

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
        if not (local / "MLmodel").is_file():  # MLflow downloads an empty folder where the files were
            raise FileNotFoundError(f"no MLmodel file in what {uri} holds")
        return local
    except (MlflowException, OSError) as err:
        name, _, version = uri.removeprefix("models:/").partition("/")
        model_id = str(client().get_model_version(name, version).source if version else uri).removeprefix("models:/")
        location = client().get_logged_model(model_id).artifact_location
        reason = str(err).splitlines()[0][:200]
        raise ModelIntegrityError(
            f"{what}: its files are gone from the artifact store (looked in {location.removeprefix('file://')}: "
            f"{reason}); they were deleted or moved after registration. Register the model again (run its flow), "
            "or pick another version"
        ) from None
