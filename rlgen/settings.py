"""Where rlgen keeps its state, and the environment defaults it sets before Prefect loads.

Import this module before `prefect` is imported: Prefect reads its settings at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

# Prefect's embedded (ephemeral) mode reports usage to the internet unless told not to.
# setdefault: a user or a deployment that sets these explicitly wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The first start of the embedded server creates its database; the default 20 s is tight on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# MLflow otherwise prints a hint about its own telemetry and tries to send some.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Our loggers show up in Prefect's run logs (and the UI) next to Prefect's own.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "models,tasks,flows,rlgen")
# ... and outside a flow run (plain functions, tests, benchmarks) they log locally without a warning.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def project_root() -> Path:
    """The rlgen home: $RLGEN_HOME, else the source checkout this package was loaded from."""
    if home := os.environ.get("RLGEN_HOME"):
        return Path(home).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


def mlruns_dir() -> Path:
    """The embedded MLflow store: `mlruns/` under the rlgen home."""
    return project_root() / "mlruns"


def data_dir() -> Path:
    """Downloaded and prepared datasets: $RLGEN_DATA_DIR, else `data/` under the rlgen home."""
    if path := os.environ.get("RLGEN_DATA_DIR"):
        return Path(path).expanduser().resolve()
    return project_root() / "data"


def checkpoints_dir() -> Path:
    """Resumable training checkpoints, one folder per MLflow run: `checkpoints/<run_id>/` under the rlgen home."""
    if path := os.environ.get("RLGEN_CHECKPOINT_DIR"):
        return Path(path).expanduser().resolve()
    return project_root() / "checkpoints"
