"""The errors rlgen raises on purpose. Each message says what failed, the value it got, and the fix.

`ConfigError` and `DataError` are the user's to fix (the CLI exits 2 before any work); the training errors
(`NonFiniteLoss`, a Langevin divergence) would repeat on a retry, so Prefect does not retry them.
"""

from __future__ import annotations

from models.errors import NonFiniteLoss, TrainingDiverged

__all__ = [
    "CheckpointMismatch",
    "CheckpointWriteError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "ModelIntegrityError",
    "NonFiniteLoss",
    "PreflightError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "UserError",
]


class ConfigError(ValueError):
    """A configuration the user gave cannot be used; the message says why and how to fix it."""


class PreflightError(ConfigError):
    """The environment cannot run rlgen (a store that cannot be written, a server that does not answer)."""


class DataError(ValueError):
    """A data file is missing, truncated or corrupt, or files disagree; the message names the file and the fix."""


class DownloadError(DataError):
    """Fetching a dataset over the network failed: the one data error that a retry may cure."""


class ModelIntegrityError(DataError):
    """A registered model's file differs from the SHA-256 recorded when it was registered; it is not loaded."""


class CheckpointMismatch(ConfigError):
    """A resumable checkpoint's state does not fit the model this code builds (the code changed since)."""


class CheckpointWriteError(OSError):
    """A checkpoint or artifact could not be written (a full disk); the previous checkpoint is intact."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped at a step boundary on the user's request, after writing its checkpoint.

    A KeyboardInterrupt, so that runs close as KILLED and the CLI exits with 128 + the signal."""


UserError = (ConfigError, DataError)  # shown as one paragraph, without a traceback
