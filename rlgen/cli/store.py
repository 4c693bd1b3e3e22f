"""The commands about the store and the servers: runs, serve (the deployments), ui."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from rlgen import preflight
from rlgen.cli.common import SetOption, console, err_console, fail
from rlgen.config.base import config_from_overrides
from rlgen.errors import ConfigError
from rlgen.pipeline import PipelineConfig, commands
from rlgen.registry import FAMILIES


def runs(limit: Annotated[int, typer.Option(min=1, help="How many runs to list.")] = 20) -> None:
    """List recent MLflow runs with their status and key metrics."""
    try:
        preflight.check_tracking()
    except ConfigError as err:
        fail(str(err))
    from rlgen.tracking.crashes import close_crashed
    from rlgen.tracking.runs import recent_runs
    from rlgen.tracking.secrets import mask_secrets
    from rlgen.tracking.store import tracking_uri

    closed = close_crashed()  # a run whose heartbeat stopped is marked FAILED, and shown as CRASHED

    keys = list(dict.fromkeys(k for f in FAMILIES.values() for k in f.metric_keys())) + ["train/steps", "train/seconds"]
    table = Table(title=f"Recent runs in {mask_secrets(tracking_uri())}")
    for column in ("started", "name", "status"):
        table.add_column(column)
    table.add_column("run id", no_wrap=True, min_width=32)  # whole, to copy into --resume or --model
    table.add_column("key metrics")
    for row in recent_runs(limit):
        metrics = ", ".join(f"{k.split('/')[-1]} {row.metrics[k]:.4g}" for k in keys if k in row.metrics)
        started = datetime.fromtimestamp(row.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        status = "CRASHED" if row.crashed else row.status
        table.add_row(started, ("  └ " if row.parent else "") + row.name, status, row.run_id, metrics)
    console.print(table)
    for crash in closed:
        console.print(f"run {crash.run_id} {crash.reason}", soft_wrap=True, highlight=False)


def sync(
    run_id: Annotated[str, typer.Argument(help="The training run, or its flow's run, whose metric journal to send.")],
) -> None:
    """Send the metrics a run kept in its local journal while the tracking server was away, in order, once each."""
    try:
        preflight.check_tracking()
        from rlgen.tracking.journal import sync as sync_journal

        done = sync_journal(run_id)
    except (ConfigError, LookupError) as err:
        fail(str(err))
    except Exception as err:
        fail(f"sending the journal of run {run_id} failed: {err.__class__.__name__}: {err}; try again later", 1)
    for train_id, delivered in done:
        console.print(f"run {train_id}: {delivered} metric rows delivered from its journal; nothing is left in it")


def serve(
    cron: Annotated[
        str, typer.Option(help="Cron schedule of the pipeline's retraining (UTC); default: Mondays 03:00.")
    ] = "0 3 * * 1",
    profile: Annotated[str, typer.Option(help="Profile of the scheduled pipeline: quick or full.")] = "quick",
    overrides: SetOption = None,
) -> None:
    """Serve every flow as a deployment, the pipeline on its retraining schedule, from this process (Ctrl-C stops it).

    Then `prefect deployment run pipeline/pipeline` (or any `<flow>/<flow>`) starts a run here; the
    pipeline also runs by itself on its schedule. Set PREFECT_API_URL to serve against a Prefect server.
    """
    try:
        config = config_from_overrides(PipelineConfig, [f"profile={profile}", *(overrides or [])])
        preflight.check_run(PipelineConfig)
        preflight.check_prefect()
    except ConfigError as err:
        fail(str(err))
    from rlgen.deployments import serve_all

    console.print(f"serving {len(commands())} deployments; pipeline schedule: {cron!r} (UTC)")
    try:
        serve_all(config, cron)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def ui(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind; the default keeps it on this machine.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="Server worker processes (one is plenty for one person).")] = 1,
) -> None:
    """Start the MLflow UI over the project's store and print its URL."""
    from rlgen.servers import check_port_free, exposure_warning, run_ui
    from rlgen.tracking.secrets import mask_secrets
    from rlgen.tracking.store import tracking_uri

    try:
        check_port_free(host, port, "The MLflow UI")
        if warning := exposure_warning(host, port, "The MLflow UI (the whole tracking store and model registry)"):
            err_console.print(warning, soft_wrap=True, highlight=False, markup=False)
        console.print(f"MLflow UI: http://{host}:{port}  (store: {mask_secrets(tracking_uri())}; Ctrl-C stops it)")
        code = run_ui(host, port, workers)
    except ConfigError as err:
        fail(str(err))
    raise typer.Exit(code)
