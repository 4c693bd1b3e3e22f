"""Validation FID-LeNet over training: the descriptor, the generator, CoopNets and DCGAN on the offline MNIST split.

Each model trains with its default config (plus `--epochs` and `--set`) on each seed, through the trainer the flows
use (benchmarks.common.build_trainer, given the flow's LeNet evaluator), which scores val/fid_lenet of prior samples
against the validation split after every epoch and keeps the best epoch's weights, as `rlgen run` does. The test split
is never looked at. Writes the four curves (mean over seeds, min-max band) to docs/figures/langevin_val_fid.png and
the curves, kept epochs and seconds to benchmarks/results/langevin_curves.json (`python -m benchmarks.tables` puts
them in docs/models/langevin.md), all against a throwaway store.

    python -m benchmarks.langevin_curves                     # default epochs of each model, seeds 1-3
    python -m benchmarks.langevin_curves --budget-factor 2   # twice each default: the curve passes the default too

Long runs can go side by side, one torch thread each, and be merged into the results file and figure:

    python -m benchmarks.langevin_curves --budget-factor 2 --threads 1 --seeds 1 --out /tmp/c1.json --figure /tmp/c1.png
    python -m benchmarks.langevin_curves --budget-factor 2 --threads 1 --seeds 2 --out /tmp/c2.json --figure /tmp/c2.png
    python -m benchmarks.langevin_curves --merge /tmp/c1.json /tmp/c2.json
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


def train(name: str, seed: int, settings: dict[str, Any], factor: float, evaluators: dict[str, Any]) -> dict[str, Any]:
    """One seed of one model for `factor` times its default epochs (or settings' `epochs`): its val/fid_lenet curve
    by epoch with the training seconds to each scored epoch, the kept epoch and its score, the seconds."""
    from rlgen import steps, tracking
    from rlgen.registry import FAMILIES

    family, overrides = MODELS[name]
    config = FAMILIES[family].config
    default_epochs = config.model_validate({**overrides, **settings, "seed": seed}).epochs
    epochs = settings.get("epochs") or max(1, round(factor * default_epochs))
    cfg = config.model_validate({**overrides, **settings, "epochs": epochs, "seed": seed})
    prepared = steps.prepare(cfg)
    if prepared.content_hash not in evaluators:  # the LeNet judge, trained once per prepared dataset
        with tracking.run("benchmarks", f"lenet-{prepared.content_hash[:8]}") as parent_id:
            evaluators[prepared.content_hash] = steps.context(cfg, prepared, parent_id)
    training = build_trainer(cfg, prepared, evaluators[prepared.content_hash])
    trainer, curve, elapsed = training.trainer, [], []
    started = time.perf_counter()
    with autocast(training.device, training.amp):  # the driver's loop, without its recording
        while not trainer.done():
            trainer.step()
            for report in trainer.reports():
                if "val/fid_lenet" in report.metrics:
                    curve.append((trainer.epochs_done, report.metrics["val/fid_lenet"]))
                    elapsed.append(round(time.perf_counter() - started, 1))
    seconds = time.perf_counter() - started
    trainer.finish()
    summary = trainer.summary(seconds, 0)
    return {
        "model": name,
        "seed": seed,
        "epochs": summary["train/epochs"],
        "default_epochs": default_epochs,
        "steps": trainer.steps,
        "train_seconds": round(seconds, 1),
        "val_fid_samples": cfg.val_fid_samples,
        "curve": curve,
        "curve_seconds": elapsed,  # training seconds (validation included) to each point of the curve
        "kept_epoch": summary.get("train/kept_epoch"),
        "best_val_fid": summary.get("val/fid_lenet_best"),
    }


def at_epoch(row: dict[str, Any], epoch: int) -> float | None:
    """The row's val FID-LeNet after `epoch`, if it was scored."""
    return dict(row["curve"]).get(epoch)


def at_seconds(row: dict[str, Any], seconds: float) -> float | None:
    """The row's val FID-LeNet at the last score within `seconds` of training (None if none was)."""
    scored = [fid for (_, fid), t in zip(row["curve"], row.get("curve_seconds", []), strict=False) if t <= seconds]
    return scored[-1] if scored else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: seeds, the median best and final val FID, the per-seed val FID at the default budget and at the end,
    the kept epochs, the median seconds; for the others beside DCGAN, DCGAN's val FID at the same training time."""
    summary = {}
    reference = {r["seed"]: r for r in rows if r["model"] == "dcgan"}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        summary[name] = {
            "seeds": len(mine),
            "epochs": mine[0]["epochs"],
            "default_epochs": mine[0].get("default_epochs", mine[0]["epochs"]),
            "best_val_fid_median": float(np.median([r["best_val_fid"] for r in mine])),
            "final_val_fid_median": float(np.median([r["curve"][-1][1] for r in mine])),
            "at_default": [at_epoch(r, r.get("default_epochs", r["epochs"])) for r in mine],
            "at_end": [r["curve"][-1][1] for r in mine],
            "kept_epochs": [r["kept_epoch"] for r in mine],
            "train_seconds_median": float(np.median([r["train_seconds"] for r in mine])),
        }
        if name != "dcgan" and reference:
            # the default budget's training time of this model, and DCGAN's score within as much time, per seed
            pairs = []
            for r in mine:
                default = r.get("default_epochs", r["epochs"])
                if (dcgan := reference.get(r["seed"])) and len(r.get("curve_seconds", [])) >= default:
                    seconds = r["curve_seconds"][default - 1]
                    pairs.append([at_epoch(r, default), at_seconds(dcgan, seconds), seconds])
            summary[name]["versus_dcgan"] = pairs  # [its val FID, DCGAN's, seconds] per seed
    return summary


def merge(paths: list[Path]) -> dict[str, Any]:
    """One results file from several runs of this benchmark (e.g. side by side, a seed each)."""
    parts = [json.loads(p.read_text()) for p in paths]
    rows = [row for part in parts for row in part["rows"]]
    seeds = sorted({r["seed"] for r in rows})
    commands = "; ".join(part["machine"].get("command", "") for part in parts)
    return {**parts[0], "machine": {**parts[0]["machine"], "command": commands}, "seeds": seeds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every model (default: each one's own)")
    parser.add_argument(
        "--budget-factor", type=float, default=1.0, help="train each model for this many times its default epochs"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--merge", type=Path, nargs="+", help="results files of earlier runs to merge (trains nothing)")
    parser.add_argument("--data-dir", default=str(DATA / "mnist" / "raw"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every model")
    parser.add_argument("--out", type=Path, default=RESULTS / "langevin_curves.json", help="the results file")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="the figure")
    args = parser.parse_args()

    from rlgen.plots import spread_curves

    if args.merge:
        result = merge(args.merge)
        rows = result["rows"]
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        settings: dict[str, Any] = {"data_dir": args.data_dir, "device": "cpu", "keep": "best_val_fid"}
        settings |= {"epochs": args.epochs} if args.epochs else {}
        settings |= dict(pair.split("=", 1) for pair in args.set)
        rows = []
        evaluators: dict[str, Any] = {}
        with scratch_home("rlgen-curves-"):
            for name in args.models:
                for seed in args.seeds:
                    row = train(name, seed, settings, args.budget_factor, evaluators)
                    rows.append(row)
                    best = f"kept epoch {row['kept_epoch']} at {row['best_val_fid']:.4g}"
                    print(f"{name:>10} seed {seed}: {row['epochs']} epochs in {row['train_seconds']:.0f} s, {best}")
        result = {
            "benchmark": "langevin_curves",
            "machine": describe(torch.device("cpu")),
            "seeds": args.seeds,
            "settings": settings,
            "budget_factor": args.budget_factor,
            "rows": rows,
        }
    models = list(dict.fromkeys(r["model"] for r in rows))
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    spread_curves(
        {name: [r["curve"] for r in rows if r["model"] == name] for name in models},
        args.figure,
        "MNIST: validation FID-LeNet of prior samples after each epoch",
        "epoch",
        f"val FID-LeNet, {rows[0]['val_fid_samples']} samples (lower is better; log scale)",
        logy=True,
    )
    result |= {"figure": str(args.figure), "summary": summarize(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
