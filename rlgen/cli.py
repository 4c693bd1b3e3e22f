"""The `rlgen` command line: parse, build the config, call the flow. Nothing else happens here."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

import rlgen.settings  # noqa: F401  (environment defaults before prefect loads)
from rlgen import preflight
from rlgen.checkpoints.stop import StopRequest, stop_scope
from rlgen.config.base import TrainConfig, config_from_overrides, describe_fields
from rlgen.errors import ConfigError, UserError
from rlgen.family import Command
from rlgen.pipeline import PipelineConfig, commands
from rlgen.registry import FAMILIES

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
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


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


def _run_command(command: Command) -> Any:
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


def _consume(action: Any, reference: str) -> Any:
    """Look up the model (a clear error if it is not there) and run `action` on it."""
    try:
        preflight.check_model_source(reference)
        return action()
    except (LookupError, ValueError, FileNotFoundError) as err:
        fail(str(err))


def play(
    model: ModelOption,
    episodes: Annotated[int, typer.Option(min=1, help="Greedy episodes to play.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the first episode; episode i uses seed + i.")] = 0,
) -> None:
    """Play an exported policy (a DQN model's) greedily and report its returns."""
    from rlgen.consumers import play_policy

    result = _consume(lambda: play_policy(model, episodes, seed), model)
    r = result.returns
    console.print(
        f"{result.model} on {result.env_id}: {len(r)} episodes, mean return {r.mean():.1f} +- {r.std():.1f} (min "
        f"{r.min():.0f}, max {r.max():.0f})"
    )


def sample(
    model: ModelOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write the grid to.")] = Path(
        "samples.png"
    ),
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="How many images.")] = 64,
    label: Annotated[
        int | None, typer.Option(help="Class to draw (conditional models); default: cycle through the classes.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latent noise.")] = 0,
) -> None:
    """Write a grid of samples from an exported image model (VAE decoder, GAN or Langevin-trained generator)."""
    from rlgen.consumers import sample_images

    path = _consume(lambda: sample_images(model, n, label, seed, output), model)
    console.print(f"wrote {n} samples of {model} to {path}")


def score(
    images: Annotated[
        list[Path], typer.Argument(help="Image files (PNG, JPEG, ...); converted to grey, resized to 28x28 if needed.")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "descriptor-mnist",
) -> None:
    """Score images with an exported energy (a descriptor's): -log p(x) + const per image (lower = likelier)."""
    from rlgen.consumers import score_images

    metadata, energies = _consume(lambda: score_images(model, images), model)
    table = Table(title=f"Energy under {model} ({metadata.get('dataset')}; lower = likelier)")
    table.add_column("image")
    table.add_column("energy", justify="right")
    for path, energy in zip(images, energies.tolist(), strict=True):
        table.add_row(str(path), f"{energy:.6g}")
    console.print(table)


def generate(
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "lm-char-tinyshakespeare",
    prompt: Annotated[
        str, typer.Option("--prompt", "-p", help="Text to continue (word level: unknown words become <unk>).")
    ] = "ROMEO:",
    tokens: Annotated[
        int,
        typer.Option("--tokens", "-n", min=1, max=100_000, help="How many tokens (characters or words) to generate."),
    ] = 300,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 is greedy.")] = 0.8,
    top_k: Annotated[
        int, typer.Option("--top-k", min=0, help="Sample among the k likeliest tokens only; 0 keeps all.")
    ] = 40,
    seed: Annotated[int, typer.Option(help="Seed of the sampling; the same seed gives the same text.")] = 0,
) -> None:
    """Continue a prompt with an exported language model (TorchScript module and its embedded vocabulary)."""
    from rlgen.consumers import generate_text

    typer.echo(_consume(lambda: generate_text(model, prompt, tokens, temperature, top_k, seed), model))


def runs(limit: Annotated[int, typer.Option(min=1, help="How many runs to list.")] = 20) -> None:
    """List recent MLflow runs with their status and key metrics."""
    try:
        preflight.check_tracking()
    except ConfigError as err:
        fail(str(err))
    from rlgen.tracking.runs import recent_runs
    from rlgen.tracking.secrets import mask_secrets
    from rlgen.tracking.store import tracking_uri

    keys = list(dict.fromkeys(k for f in FAMILIES.values() for k in f.metric_keys())) + ["train/steps", "train/seconds"]
    table = Table(title=f"Recent runs in {mask_secrets(tracking_uri())}")
    for column in ("started", "name", "status"):
        table.add_column(column)
    table.add_column("run id", no_wrap=True, min_width=32)  # whole, to copy into --resume or --model
    table.add_column("key metrics")
    for row in recent_runs(limit):
        metrics = ", ".join(f"{k.split('/')[-1]} {row.metrics[k]:.4g}" for k in keys if k in row.metrics)
        started = datetime.fromtimestamp(row.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(started, ("  └ " if row.parent else "") + row.name, row.status, row.run_id, metrics)
    console.print(table)


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
    from rlgen.servers import run_ui
    from rlgen.tracking.secrets import mask_secrets
    from rlgen.tracking.store import tracking_uri

    console.print(f"MLflow UI: http://{host}:{port}  (store: {mask_secrets(tracking_uri())}; Ctrl-C stops it)")
    try:
        code = run_ui(host, port, workers)
    except ConfigError as err:
        fail(str(err))
    raise typer.Exit(code)


def serve_model(
    model: Annotated[
        str, typer.Argument(help="NAME (its champion), NAME@ALIAS or NAME/VERSION of a registered model.")
    ],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5001,
    host: Annotated[str, typer.Option(help="Interface to bind; the default keeps it on this machine.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="Server worker processes.")] = 1,
) -> None:
    """Serve a registered model over REST (`mlflow models serve`, POST /invocations) and print a curl example."""
    try:
        preflight.check_model_source(model)
        from rlgen.servers import curl_example, run_model_server
        from rlgen.tracking.registry import model_uri

        uri = model_uri(model)
        if uri is None:
            raise ValueError(
                f"{model!r} predates rlgen's MLflow models (a bare folder): run its flow again to serve it"
            )
        console.print(f"serving {model} ({uri}) at http://{host}:{port}/invocations (Ctrl-C stops it); try:")
        typer.echo(curl_example(uri, port))
        code = run_model_server(uri, host, port, workers)
    except (LookupError, ValueError, ConfigError) as err:
        fail(str(err))
    raise typer.Exit(code)


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
        run_app.command(name)(_run_command(command))
    for function in (play, sample, score, generate, runs, serve, ui):
        app.command()(function)
    app.command("serve-model")(serve_model)
    return app


app = make_app()

if __name__ == "__main__":
    app()
