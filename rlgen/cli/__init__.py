"""The `rlgen` command line: parse, build the config, call the flow. Nothing else happens here."""

from __future__ import annotations

import typer

import rlgen.settings  # noqa: F401  (environment defaults before prefect loads)
from rlgen.cli.run import run_command
from rlgen.cli.store import runs, serve, sync, ui
from rlgen.cli.use import generate, play, sample, score, serve_model
from rlgen.pipeline import commands


def make_app() -> typer.Typer:
    """The command line, with a `run` command for the pipeline and each registered family."""
    app = typer.Typer(
        help="Train RL and generative models as Prefect flows, tracked in MLflow.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    run_app = typer.Typer(help="Run a model's flow: prepare, train, evaluate, export, register.", no_args_is_help=True)
    app.add_typer(run_app, name="run")
    for name, command in commands().items():
        run_app.command(name)(run_command(command))
    for function in (play, sample, score, generate, runs, sync, serve, ui):
        app.command()(function)
    app.command("serve-model")(serve_model)
    return app


app = make_app()

if __name__ == "__main__":
    app()
