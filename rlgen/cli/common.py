"""What the commands share: the consoles, one-paragraph errors, the option types."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)
MODEL_HELP = "Registered NAME, NAME@ALIAS, NAME/VERSION, a run id, or a .pt path."

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set key=value (repeatable).", metavar="KEY=VALUE"),
]

ResumeOption = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="RUN_ID",
        help="Continue a stopped or crashed run (its flow run or training run id) from its last checkpoint, with its "
        "own config.",
    ),
]

ModelOption = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-paragraph error and exit non-zero."""
    from rlgen.tracking.secrets import mask_secrets

    err_console.print(f"[bold red]error:[/] {mask_secrets(message)}", soft_wrap=True, highlight=False, markup=True)
    raise typer.Exit(code)
