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
