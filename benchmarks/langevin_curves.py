"""Validation FID-LeNet over training: the descriptor, the generator, CoopNets and DCGAN on the offline MNIST split.

Each model trains with its default config (plus `--epochs` and `--set`) on each seed, through the trainer the flows
use (benchmarks.common.build_trainer, given the flow's LeNet evaluator), which scores val/fid_lenet of prior samples
against the validation split after every epoch and keeps the best epoch's weights, as `rlgen run` does. The test split
is never looked at. Writes the four curves (mean over seeds, min-max band) to docs/figures/langevin_val_fid.png and
the curves, kept epochs and seconds to benchmarks/results/langevin_curves.json (`python -m benchmarks.tables` puts
them in docs/models/langevin.md), all against a throwaway store.

    python -m benchmarks.langevin_curves                     # default epochs of each model, seeds 1-3
    python -m benchmarks.langevin_curves --epochs 1 --seeds 1 --models descriptor dcgan --out /tmp/c.json \\
        --figure /tmp/c.png                                  # a smoke run, kept out of the docs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import DATA, RESULTS, ROOT, build_trainer, scratch_home
from benchmarks.machine import describe
from models.common import autocast

FIGURE = ROOT / "docs" / "figures" / "langevin_val_fid.png"
MODELS = {  # name: (family, overrides)
    "descriptor": ("descriptor", {}),
    "generator": ("generator", {}),
    "coop": ("coop", {}),
    "dcgan": ("gan", {"variant": "dcgan"}),
}


def train(name: str, seed: int, settings: dict[str, Any], evaluators: dict[str, Any]) -> dict[str, Any]:
    """One seed of one model: its val/fid_lenet curve by epoch, the kept epoch and its score, the seconds."""
    from rlgen import steps, tracking
    from rlgen.registry import FAMILIES

    family, overrides = MODELS[name]
    cfg = FAMILIES[family].config.model_validate({**overrides, **settings, "seed": seed})
    prepared = steps.prepare(cfg)
    if prepared.content_hash not in evaluators:  # the LeNet judge, trained once per prepared dataset
        with tracking.run("benchmarks", f"lenet-{prepared.content_hash[:8]}") as parent_id:
            evaluators[prepared.content_hash] = steps.context(cfg, prepared, parent_id)
    training = build_trainer(cfg, prepared, evaluators[prepared.content_hash])
    trainer, curve = training.trainer, []
    started = time.perf_counter()
    with autocast(training.device, training.amp):  # the driver's loop, without its recording
        while not trainer.done():
            trainer.step()
            for report in trainer.reports():
                if "val/fid_lenet" in report.metrics:
                    curve.append((trainer.epochs_done, report.metrics["val/fid_lenet"]))
    seconds = time.perf_counter() - started
    trainer.finish()
    summary = trainer.summary(seconds, 0)
    return {
        "model": name,
        "seed": seed,
        "epochs": summary["train/epochs"],
        "steps": trainer.steps,
        "train_seconds": round(seconds, 1),
        "val_fid_samples": cfg.val_fid_samples,
        "curve": curve,
        "kept_epoch": summary.get("train/kept_epoch"),
        "best_val_fid": summary.get("val/fid_lenet_best"),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: seeds, the median best and final val FID, the kept epochs, the median seconds."""
    summary = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        summary[name] = {
            "seeds": len(mine),
            "epochs": mine[0]["epochs"],
            "best_val_fid_median": float(np.median([r["best_val_fid"] for r in mine])),
            "final_val_fid_median": float(np.median([r["curve"][-1][1] for r in mine])),
            "kept_epochs": [r["kept_epoch"] for r in mine],
            "train_seconds_median": float(np.median([r["train_seconds"] for r in mine])),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every model (default: each one's own)")
    parser.add_argument("--data-dir", default=str(DATA / "mnist" / "raw"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every model")
    parser.add_argument("--out", type=Path, default=RESULTS / "langevin_curves.json", help="the results file")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="the figure")
    args = parser.parse_args()

    from rlgen.plots import spread_curves

    settings: dict[str, Any] = {"data_dir": args.data_dir, "device": "cpu", "keep": "best_val_fid"}
    settings |= {"epochs": args.epochs} if args.epochs else {}
    settings |= dict(pair.split("=", 1) for pair in args.set)
    rows: list[dict[str, Any]] = []
    evaluators: dict[str, Any] = {}
    with scratch_home("rlgen-curves-"):
        for name in args.models:
            for seed in args.seeds:
                row = train(name, seed, settings, evaluators)
                rows.append(row)
                best = f"kept epoch {row['kept_epoch']} at {row['best_val_fid']:.4g}"
                print(f"{name:>10} seed {seed}: {row['epochs']} epochs in {row['train_seconds']:.0f} s, {best}")
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    spread_curves(
        {name: [r["curve"] for r in rows if r["model"] == name] for name in args.models},
        args.figure,
        "MNIST: validation FID-LeNet of prior samples after each epoch",
        "epoch",
        f"val FID-LeNet, {rows[0]['val_fid_samples']} samples (lower is better)",
    )
    result = {
        "benchmark": "langevin_curves",
        "machine": describe(torch.device("cpu")),
        "seeds": args.seeds,
        "settings": settings,
        "figure": str(args.figure),
        "summary": summarize(rows),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
