"""`rlgen run NAME`: parse the keys, build the config, call the flow."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer

import rlgen.settings  # noqa: F401  (environment defaults before prefect loads)
from rlgen import preflight
from rlgen.checkpoints.stop import StopRequest, stop_scope
from rlgen.cli.common import ResumeOption, SetOption, console, err_console, fail
from rlgen.config.base import TrainConfig, config_from_overrides, describe_fields
from rlgen.errors import ConfigError, UserError
from rlgen.family import Command


def _interrupted(message: str, signals: list[int]) -> NoReturn:
    err_console.print(message, soft_wrap=True, highlight=False)
    raise typer.Exit(128 + (signals or [signal.SIGINT])[0])


def _keys_help(command: Command) -> str:
    lines = [f"{key} = {default}\n    {desc}" for key, default, desc in describe_fields(command.config)]
    return "Config keys, set with --set KEY=VALUE (KEY = default, then meaning):\n\n\b\n" + "\n".join(lines)


def _config(command: Command, overrides: list[str] | None, resume: str | None) -> tuple[Any, dict[str, str]]:
    """The config to run and the flow's resume argument; ConfigError before any work when they cannot be used."""
    preflight.check_run(command.config)  # store writable, MLflow answers: before any work
    if resume is None:
        return config_from_overrides(command.config, overrides or []), {}
    if overrides:
        raise ConfigError("--resume continues a run with the config it started with; it cannot be combined with --set.")
    if not issubclass(command.config, TrainConfig):
        raise ConfigError(
            f"`rlgen run {command.name}` cannot --resume; resume one of its model runs with `rlgen run MODEL --resume "
            "RUN_ID`."
        )
    from rlgen.tracking.lifecycle import resume_target

    config, run_id = resume_target(command.config, resume)
    return config, {"resume_run_id": run_id}


@contextmanager
def _signals_stop(stop: StopRequest) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (SIGTERM unwinds like Ctrl-C: runs close as KILLED); the old handlers come back."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, stop.handler(None))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_command(command: Command) -> Any:
    def run(overrides: SetOption = None, resume: ResumeOption = None) -> None:
        try:
            config, resume_args = _config(command, overrides, resume)
            preflight.check_prefect()  # a Prefect server that does not answer fails here, not after its retries
        except ConfigError as err:
            fail(str(err))
        with stop_scope() as stop, _signals_stop(stop):  # the flow's runs watch signals too, with this request
            flow = command.load_flow()
            preflight.quiet_user_errors()  # a bad data file is one paragraph below, not also a traceback
            try:
                result: Any = flow(config, **resume_args)
            except UserError as err:
                fail(str(err))
            except KeyboardInterrupt as err:
                _interrupted(
                    f"interrupted: {err}; the MLflow runs are marked KILLED"
                    if str(err)
                    else "interrupted: the MLflow runs are marked KILLED",
                    stop.signals,
                )
            except Exception as err:  # the flow and its MLflow runs are already marked failed
                if stop.signals:  # a pipeline branch stopped by the signal fails its future, not the main thread
                    _interrupted(f"interrupted: {err}", stop.signals)
                fail(f"the {command.name} flow failed: {err.__class__.__name__}: {err}", code=1)
        summary = result._asdict() if hasattr(result, "_asdict") else result
        console.print(summary)
        if path := os.environ.get("RLGEN_RESULT_JSON"):  # for scripts and benchmarks
            Path(path).write_text(json.dumps(summary, default=str))

    run.__doc__ = f"{command.summary}\n\n{_keys_help(command)}"
    return run
