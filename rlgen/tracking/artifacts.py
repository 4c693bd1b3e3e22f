"""Files into a run's artifact folder (paths that cannot leave it), and back out."""

from __future__ import annotations

import errno
import functools
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlgen.errors import CheckpointWriteError
from rlgen.tracking.store import client, tracking_uri

if TYPE_CHECKING:
    from torch import Tensor


def safe_artifact_path(path: str | None) -> str | None:
    """`path` if it stays inside the run's artifact folder; raises ValueError for absolute paths and '..'."""
    if path is None:
        return None
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path) or ".." in parts:
        raise ValueError(
            f"artifact path {path!r} would leave the run's artifact folder; use a relative path without '..'"
        )
    return path


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    """A scratch folder for files on their way into the store."""
    return tempfile.TemporaryDirectory(prefix="rlgen-")


def log_dict(run_id: str, data: dict[str, Any], artifact_file: str) -> None:
    """A JSON artifact."""
    client().log_dict(run_id, data, _required(artifact_file))


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    """A text artifact (Markdown, HTML, plain text)."""
    client().log_text(run_id, text, _required(artifact_file))


def log_artifact(run_id: str, path: Path, artifact_path: str | None = None) -> str:
    """Upload a local file; returns its artifact URI."""
    try:
        client().log_artifact(run_id, str(path), safe_artifact_path(artifact_path))
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CheckpointWriteError(
            err.errno,
            f"the artifact {path.name} of run {run_id} could not be stored ({err.strerror}); the run's resumable "
            f"checkpoint is kept. Fix: free space in the artifact store, then `rlgen run FAMILY --resume {run_id}`",
        ) from err
    return artifact_uri(run_id, f"{artifact_path}/{path.name}" if artifact_path else path.name)


def log_image(run_id: str, images: Tensor, artifact_file: str, nrow: int = 10) -> None:
    """A PNG grid of images (B, C, H, W) in [0, 1]."""
    from rlgen.plots import save_grid  # matplotlib and torch: only when a grid is logged

    folder, _, name = artifact_file.rpartition("/")
    with temp_dir() as tmp:
        log_artifact(run_id, save_grid(images, Path(tmp) / name, nrow), folder or None)


def artifact_uri(run_id: str, artifact_path: str) -> str:
    """The URI of an artifact of a run."""
    return f"{_artifact_root(tracking_uri(), run_id)}/{artifact_path}"


@functools.cache
def _artifact_root(store: str, run_id: str) -> str:
    """A run's artifact folder, which never changes: looked up once (`get_run` reads all of a run's metrics)."""
    return str(client().get_run(run_id).info.artifact_uri).rstrip("/")


def download(run_id: str, artifact_path: str, dst: Path) -> Path:
    """Download an artifact (file or folder) of a run into `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client().download_artifacts(run_id, _required(artifact_path), str(dst)))


def list_artifacts(run_id: str, folder: str | None = None) -> list[str]:
    """Paths of the artifacts directly under `folder` of a run."""
    return [f.path for f in client().list_artifacts(run_id, safe_artifact_path(folder))]


def _required(path: str) -> str:
    checked = safe_artifact_path(path)
    assert checked is not None
    return checked
