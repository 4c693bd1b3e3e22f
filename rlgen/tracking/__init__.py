"""Every MLflow call rlgen makes lives in this package, one module per job.

- `store`: where runs go (the embedded SQLite store under mlruns/, or $MLFLOW_TRACKING_URI) and the client.
- `runs`: the run lifecycle (open, reopen, close FINISHED / FAILED / KILLED), params, tags, metrics, listing.
- `artifacts`: files, JSON, text and image grids into a run's artifact folder, and back.
- `metrics`: the background metric logger that never makes training wait for MLflow.
- `registry`: registered models, versions, aliases, and what a model reference (NAME@ALIAS, ...) points at.
- `promotion`: champion / challenger decisions.
- `lifecycle`: the MLflow runs of a flow (parent and training run), tied to the Prefect run.
- `secrets`: masking passwords and secret-looking values before anything is logged or printed.

Runs are addressed by explicit run ids through `MlflowClient`, never through MLflow's fluent "active run":
that is per thread, and Prefect runs tasks in a thread pool.
"""

from rlgen.tracking.artifacts import (
    artifact_uri,
    download,
    list_artifacts,
    log_artifact,
    log_dict,
    log_image,
    log_text,
    safe_artifact_path,
    temp_dir,
)
from rlgen.tracking.metrics import MetricLogger
from rlgen.tracking.registry import (
    ModelVersion,
    alias_version,
    model_versions,
    register_model,
    resolve_model,
    set_alias,
    tag_version,
    wait_for_earlier_versions,
)
from rlgen.tracking.runs import (
    PARENT_TAG,
    RunRow,
    child_runs,
    get_run,
    last_metric_steps,
    log_config,
    log_metrics,
    log_params,
    metric_history,
    recent_runs,
    run,
    set_tags,
)
from rlgen.tracking.secrets import mask_secrets
from rlgen.tracking.store import client, experiment_id, is_embedded, run_link, tracking_uri, ui_url

__all__ = [
    "PARENT_TAG",
    "MetricLogger",
    "ModelVersion",
    "RunRow",
    "alias_version",
    "artifact_uri",
    "child_runs",
    "client",
    "download",
    "experiment_id",
    "get_run",
    "is_embedded",
    "last_metric_steps",
    "list_artifacts",
    "log_artifact",
    "log_config",
    "log_dict",
    "log_image",
    "log_metrics",
    "log_params",
    "log_text",
    "mask_secrets",
    "metric_history",
    "model_versions",
    "recent_runs",
    "register_model",
    "resolve_model",
    "run",
    "run_link",
    "safe_artifact_path",
    "set_alias",
    "set_tags",
    "tag_version",
    "temp_dir",
    "tracking_uri",
    "ui_url",
    "wait_for_earlier_versions",
]
