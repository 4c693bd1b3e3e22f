"""The commands that use a model: play, sample, score, generate, serve-model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rlgen import preflight
from rlgen.cli.common import MODEL_HELP, ModelOption, console, err_console, fail
from rlgen.errors import ConfigError


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
        from rlgen.servers import check_port_free, curl_example, exposure_warning, run_model_server
        from rlgen.tracking.registry import model_uri

        uri = model_uri(model)
        if uri is None:
            raise ValueError(
                f"{model!r} predates rlgen's MLflow models (a bare folder): run its flow again to serve it"
            )
        check_port_free(host, port, f"The model server of {model}")
        if warning := exposure_warning(host, port, f"The model server of {model}"):
            err_console.print(warning, soft_wrap=True, highlight=False, markup=False)
        console.print(f"serving {model} ({uri}) at http://{host}:{port}/invocations (Ctrl-C stops it); try:")
        typer.echo(curl_example(uri, port))
        code = run_model_server(uri, host, port, workers)
    except (LookupError, ValueError, ConfigError) as err:
        fail(str(err))
    raise typer.Exit(code)
