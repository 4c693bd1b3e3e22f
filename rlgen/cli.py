"""The `rlgen` command line: parse, build the config, call the flow. Nothing else happens here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

import rlgen.settings  # noqa: F401  (environment defaults before prefect loads)
from rlgen import preflight
from rlgen.config import ConfigError, TrainConfig, config_from_overrides, describe_fields
from rlgen.registry import COMMANDS

app = typer.Typer(
    help="Train RL and generative models as Prefect flows, tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help="Run a model's flow: prepare, train, evaluate, export, register.", no_args_is_help=True)
app.add_typer(run_app, name="run")

console = Console()
err_console = Console(stderr=True)

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config key: --set key=value (repeatable).", metavar="KEY=VALUE"),
]


def fail(message: str, code: int = 2) -> None:
    """Print a one-paragraph error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


ResumeOption = Annotated[
    Optional[str],
    typer.Option(
        "--resume", metavar="RUN_ID",
        help="Continue a stopped or crashed run (its flow run or training run id) from its last checkpoint, with its own config.",
    ),
]


def _resume_target(name: str, run_id: str, overrides: list[str] | None):
    """The stored config and training run id of a run to resume; ConfigError when it cannot be resumed."""
    if overrides:
        raise ConfigError("--resume continues a run with the config it started with; it cannot be combined with --set.")
    if not issubclass(COMMANDS[name].config, TrainConfig):
        raise ConfigError(f"`rlgen run {name}` cannot --resume; resume one of its model runs with `rlgen run MODEL --resume RUN_ID`.")
    from tasks.runs import resume_target

    return resume_target(COMMANDS[name].config, run_id)


def _keys_help(name: str) -> str:
    lines = [f"{key} = {default}\n    {desc}" for key, default, desc in describe_fields(COMMANDS[name].config)]
    return "Config keys, set with --set KEY=VALUE (KEY = default, then meaning):\n\n\b\n" + "\n".join(lines)


def _make_run_command(name: str) -> None:
    spec = COMMANDS[name]

    def command(overrides: SetOption = None, resume: ResumeOption = None) -> None:
        resume_args = {}
        try:
            preflight.check_run(spec.config)  # store writable, MLflow answers: before any work
            if resume is None:
                config = config_from_overrides(spec.config, overrides or [])
            else:
                config, resume_args["resume_run_id"] = _resume_target(name, resume, overrides)
            preflight.check_prefect()  # a Prefect server that does not answer fails here, not after its retries
        except ConfigError as err:
            fail(str(err))
        from tasks.checkpoint import received_signals, stop_handler

        for signum in (signal.SIGINT, signal.SIGTERM):  # SIGTERM unwinds like Ctrl-C: runs close as KILLED
            signal.signal(signum, stop_handler(None))
        flow = spec.load_flow()
        preflight.quiet_user_errors()  # a bad data file is one paragraph below, not also a traceback
        from tasks.image_data import DataError

        try:
            result = flow(config, **resume_args)
        except (ConfigError, DataError) as err:
            fail(str(err))
        except KeyboardInterrupt as err:
            err_console.print(f"interrupted: {err}; the MLflow runs are marked KILLED" if str(err) else "interrupted: the MLflow runs are marked KILLED",
                              soft_wrap=True, highlight=False)
            raise typer.Exit(128 + (received_signals() or [signal.SIGINT])[0])
        except Exception as err:  # the flow and its MLflow runs are already marked failed
            if received_signals():  # a pipeline branch stopped by the signal fails its future, not the main thread
                err_console.print(f"interrupted: {err}", soft_wrap=True, highlight=False)
                raise typer.Exit(128 + received_signals()[0]) from None
            fail(f"the {name} flow failed: {err.__class__.__name__}: {err}", code=1)
        summary = result._asdict() if hasattr(result, "_asdict") else result
        console.print(summary)
        if path := os.environ.get("RLGEN_RESULT_JSON"):  # for scripts and benchmarks
            Path(path).write_text(json.dumps(summary, default=str))

    command.__doc__ = f"{spec.summary}\n\n{_keys_help(name)}"
    run_app.command(name)(command)


for _name in COMMANDS:
    _make_run_command(_name)


@app.command()
def play(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered NAME, NAME@ALIAS, NAME/VERSION, a run id, or a .pt path.")],
    episodes: Annotated[int, typer.Option(min=1, help="Greedy episodes to play.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the first episode; episode i uses seed + i.")] = 0,
) -> None:
    """Play the exported TorchScript policy of a DQN model and report its returns."""
    from tasks.play import play_policy

    try:
        preflight.check_model_source(model)
        result = play_policy(model, episodes, seed)
    except (LookupError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    returns = result.returns
    console.print(
        f"{result.model} on {result.env_id}: {len(returns)} episodes, mean return {returns.mean():.1f} "
        f"+- {returns.std():.1f} (min {returns.min():.0f}, max {returns.max():.0f})"
    )


KEY_METRICS = (
    "eval/mean_return", "eval/solved", "eval/fid_lenet", "eval/iw_nll", "eval/cond_accuracy",
    "eval/valid_perplexity", "eval/valid_bpc", "train/steps", "train/seconds",
)


@app.command()
def sample(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered NAME, NAME@ALIAS, NAME/VERSION, a run id, or a .pt path.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write the grid to.")] = Path("samples.png"),
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="How many images.")] = 64,
    label: Annotated[Optional[int], typer.Option(help="Class to draw (conditional models); default: cycle through the classes.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latent noise.")] = 0,
) -> None:
    """Write a grid of samples from an exported image model (VAE decoder, GAN or Langevin-trained generator)."""
    from tasks.play import sample_images

    try:
        preflight.check_model_source(model)
        path = sample_images(model, n, label, seed, output)
    except (LookupError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    console.print(f"wrote {n} samples of {model} to {path}")


@app.command()
def score(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, ...); converted to grey, resized to 28x28 if needed.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registered NAME, NAME@ALIAS, NAME/VERSION, a run id, or a .pt path.")] = "descriptor-mnist",
) -> None:
    """Score images with an exported descriptor: energy -log p(x) + const per image (lower = likelier)."""
    from tasks.play import score_images

    try:
        preflight.check_model_source(model)
        metadata, energies = score_images(model, images)
    except (LookupError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    table = Table(title=f"Energy under {model} ({metadata.get('dataset')}; lower = likelier)")
    table.add_column("image")
    table.add_column("energy", justify="right")
    for path, energy in zip(images, energies.tolist()):
        table.add_row(str(path), f"{energy:.6g}")
    console.print(table)


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered NAME, NAME@ALIAS, NAME/VERSION, a run id, or a .pt path.")] = "lm-char-tinyshakespeare",
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue (word level: unknown words become <unk>).")] = "ROMEO:",
    tokens: Annotated[int, typer.Option("--tokens", "-n", min=1, max=100_000, help="How many tokens (characters or words) to generate.")] = 300,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 is greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Sample among the k likeliest tokens only; 0 keeps all.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of the sampling; the same seed gives the same text.")] = 0,
) -> None:
    """Continue a prompt with an exported language model (TorchScript module and its embedded vocabulary)."""
    from tasks.play import generate_text

    try:
        preflight.check_model_source(model)
        text = generate_text(model, prompt, tokens, temperature, top_k, seed)
    except (LookupError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(text)


@app.command()
def runs(limit: Annotated[int, typer.Option(min=1, help="How many runs to list.")] = 20) -> None:
    """List recent MLflow runs with their status and key metrics."""
    from tasks import tracking

    try:
        preflight.check_tracking()
    except ConfigError as err:
        fail(str(err))
    table = Table(title=f"Recent runs in {tracking.tracking_uri()}")
    for column in ("started", "name", "status"):
        table.add_column(column)
    table.add_column("run id", no_wrap=True, min_width=32)  # whole, to copy into --resume or --model
    table.add_column("key metrics")
    for run in tracking.recent_runs(limit):
        keys = [k for k in KEY_METRICS if k in run["metrics"]]
        metrics = ", ".join(f"{k.split('/')[-1]} {run['metrics'][k]:.4g}" for k in keys)
        started = datetime.fromtimestamp(run["start_time"] / 1000).strftime("%Y-%m-%d %H:%M:%S")
        name = ("  └ " if run["parent"] else "") + (run["name"] or "")
        table.add_row(started, name, run["status"], run["run_id"], metrics)
    console.print(table)


@app.command()
def serve(
    cron: Annotated[str, typer.Option(help="Cron schedule of the pipeline's retraining (UTC); default: Mondays 03:00.")] = "0 3 * * 1",
    profile: Annotated[str, typer.Option(help="Profile of the scheduled pipeline: quick or full.")] = "quick",
    overrides: SetOption = None,
) -> None:
    """Serve every flow as a deployment, the pipeline on its retraining schedule, from this process (Ctrl-C stops it).

    Then `prefect deployment run pipeline/pipeline` (or any `<flow>/<flow>`) starts a run here; the
    pipeline also runs by itself on its schedule. Set PREFECT_API_URL to serve against a Prefect server.
    """
    from rlgen.config.pipeline import PipelineConfig
    from tasks.deployments import serve_all

    try:
        config = config_from_overrides(PipelineConfig, [f"profile={profile}", *(overrides or [])])
        preflight.check_run(PipelineConfig)
        preflight.check_prefect()
    except ConfigError as err:
        fail(str(err))
    console.print(f"serving {len(COMMANDS)} deployments; pipeline schedule: {cron!r} (UTC)")
    try:
        serve_all(config, cron)
    except KeyboardInterrupt:
        raise typer.Exit(130)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind; the default keeps it on this machine.")] = "127.0.0.1",
) -> None:
    """Start the MLflow UI over the project's store and print its URL."""
    from rlgen.settings import mlruns_dir
    from tasks import tracking

    mlflow_bin = shutil.which("mlflow", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if mlflow_bin is None:
        fail("the mlflow command is not installed in this environment; run `make test` or `pip install mlflow`")
    tracking.client()  # creates the embedded store's folder
    command = [
        mlflow_bin, "server",
        "--backend-store-uri", tracking.tracking_uri(),
        "--default-artifact-root", (mlruns_dir() / "artifacts").as_uri(),
        "--host", host, "--port", str(port),
    ]
    console.print(f"MLflow UI: http://{host}:{port}  (store: {tracking.tracking_uri()}; Ctrl-C stops it)")
    # The server runs in a process group of its own, and Ctrl-C or SIGTERM stops the whole group: `mlflow server`
    # starts workers of its own, which a signal to it alone would leave behind.
    server = subprocess.Popen(command, start_new_session=True)
    stopped: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    try:
        code = server.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # whatever of the group is left
    raise typer.Exit(128 + stopped[0] if stopped else code)


if __name__ == "__main__":
    app()
