"""The Langevin models over longer training: the generator's inferred latents against the prior, coop's revision, and
the quality of prior samples on the validation split, epoch by epoch.

Two stages, so that long trainings can run side by side and be scored once:

    python -m benchmarks.langevin_study train generator /tmp/study/g-default
    python -m benchmarks.langevin_study train generator /tmp/study/g-005 --set infer_step=0.05 --set seed=2
    python -m benchmarks.langevin_study train coop /tmp/study/c-default --set epochs=16
    python -m benchmarks.langevin_study score /tmp/study/*.json --out langevin_study.json

`train` builds the family's trainer as the flow does (benchmarks.common.build_trainer) for `--epochs` (default 16,
twice the budget the study started from) and writes, after every epoch, the generator's weights (`PREFIX.eN.pt`)
and a row of the epoch's means of the training statistics, with the inferred latents' std for the generator
(`PREFIX.json`). `score` trains one LeNet on the training split (seeded, cached beside the inputs), and scores
every saved epoch: FID-LeNet of 1,000 prior samples (batch norm recalibrated on prior batches, as the export does)
against the 1,000 validation images. Never the test split. It writes benchmarks/results/langevin_study.json and the
figure docs/figures/langevin_study.png, which `python -m benchmarks.tables` turns into the table of
docs/models/langevin.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DATA, RESULTS, ROOT
from benchmarks.machine import describe

FIGURE = ROOT / "docs" / "figures" / "langevin_study.png"
VAL_SAMPLES = 1_000


def config(family: str, sets: list[str]) -> Any:
    from rlgen.config.base import config_from_overrides
    from rlgen.registry import family as family_record

    data = f"data_dir={DATA / 'mnist' / 'raw'}"
    return config_from_overrides(family_record(family).config, ["device=cpu", data, *sets])


def train(family: str, prefix: Path, epochs: int, sets: list[str]) -> None:
    """Train `family` for `epochs`, saving the generator after every epoch and a row of figures per epoch."""
    from benchmarks.common import build_trainer
    from rlgen import steps

    torch.set_num_threads(1)
    cfg = config(family, [f"epochs={epochs}", *sets])
    trainer = build_trainer(cfg, steps.prepare(cfg)).trainer
    rows: list[dict[str, Any]] = []
    sums: dict[str, list[float]] = {}
    started = time.perf_counter()
    while not trainer.done():
        for key, value in trainer.step().items():
            sums.setdefault(key, []).append(float(value))
        if not trainer.reports():
            continue
        row: dict[str, Any] = {"epoch": trainer.epochs_done, "seconds": round(time.perf_counter() - started)}
        row |= {key: sum(values) / len(values) for key, values in sums.items()}
        latents = getattr(trainer, "latents", None)
        if latents is not None:
            row["train/latent_std"] = float(latents.std())
        rows.append(row)
        sums = {}
        print(json.dumps(row), flush=True)
        generator = trainer.modules()["generator"]
        torch.save(generator.state_dict(), f"{prefix}.e{trainer.epochs_done}.pt")
        record = {"family": family, "sets": sets, "config": cfg.model_dump(mode="json"), "rows": rows}
        Path(f"{prefix}.json").write_text(json.dumps(record, indent=1))


def evaluator(cache: Path) -> Any:
    """A LeNet trained on the training split for 10 epochs, seed 0 (cached): the judge of every score."""
    from models import lenet
    from models.common import seed_everything
    from rlgen import steps
    from rlgen.data.images import load_prepared
    from rlgen.evaluation.images import LeNetTrainer

    cfg = config("generator", [])
    data = load_prepared(steps.prepare(cfg).path, torch.device("cpu"))
    seed_everything(0)
    model = lenet.LeNet(10)
    if cache.is_file():
        model.load_state_dict(torch.load(cache, weights_only=True))
    else:
        trainer = LeNetTrainer(model, data["train_images"], data["train_labels"], 10)
        while not trainer.done():
            trainer.step()
            trainer.reports()
        torch.save(model.state_dict(), cache)
    return model.eval(), data["val_images"][:VAL_SAMPLES].float() / 255.0


def score(records: list[Path], out: str) -> None:
    """Val FID-LeNet of every saved epoch of every record; the results file and the figure."""
    from models import fid, langevin
    from rlgen.families.langevin import build_generator
    from rlgen.plots import spread_curves

    torch.set_num_threads(2)
    model, real = evaluator(records[0].parent / "lenet-val.pt")
    reference = fid.feature_statistics(fid.extract_features(model, real))
    runs = []
    for path in records:
        record = json.loads(path.read_text())
        cfg = config(record["family"], record["sets"])
        prefix = str(path)[: -len(".json")]
        for row in record["rows"]:
            generator = build_generator(cfg)
            generator.load_state_dict(torch.load(f"{prefix}.e{row['epoch']}.pt", weights_only=True))
            langevin.calibrate_batch_norm(generator, cfg.latent_dim, torch.device("cpu"))
            z = torch.randn(VAL_SAMPLES, cfg.latent_dim, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                images = langevin.to_unit(generator(z))
            features = fid.extract_features(model, images)
            row["val/fid_lenet"] = fid.frechet_distance(*fid.feature_statistics(features), *reference)
            print(path.name, row["epoch"], round(row["val/fid_lenet"], 1), flush=True)
        runs.append({"name": path.stem, "family": record["family"], "sets": record["sets"], "rows": record["rows"]})
    FIGURE.parent.mkdir(exist_ok=True)
    panels = {"val/fid_lenet": "FID-LeNet of prior samples (validation)", "train/latent_std": "inferred latents' std"}
    for key, title in panels.items():
        curves = {
            run["name"]: [[(r["epoch"], r[key]) for r in run["rows"] if key in r]]
            for run in runs
            if any(key in r for r in run["rows"])
        }
        path = FIGURE if key == "val/fid_lenet" else FIGURE.with_name("langevin_latents.png")
        spread_curves(curves, path, f"Langevin models: {title}", "epoch", title)
    result = {"benchmark": "langevin_study", "machine": {**describe(torch.device("cpu")), "torch_threads": 1}}
    result["runs"] = runs
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / out).write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    trains = sub.add_parser("train", help="train one variant, saving every epoch")
    trains.add_argument("family", choices=["generator", "coop"])
    trains.add_argument("prefix", type=Path, help="where its files go: PREFIX.json and PREFIX.eN.pt")
    trains.add_argument("--epochs", type=int, default=16)
    trains.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    scores = sub.add_parser("score", help="score every saved epoch on the validation split")
    scores.add_argument("records", type=Path, nargs="+", help="PREFIX.json files written by train")
    scores.add_argument("--out", default="langevin_study.json", help="results file name under benchmarks/results")
    args = parser.parse_args()
    if args.stage == "train":
        train(args.family, args.prefix, args.epochs, args.set)
    else:
        score(args.records, args.out)


if __name__ == "__main__":
    main()
