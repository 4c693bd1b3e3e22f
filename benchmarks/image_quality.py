"""Quality of every image model on the offline MNIST split (8k/1k/1k of the 10k test images), one table.

Each row runs the real flow (`rlgen run vae|gan|descriptor|generator|coop`) with its quick budget, against a throwaway
store, and reads the evaluation back: FID-LeNet with its real-vs-real floor, negative ELBO and
importance-weighted NLL (VAEs), conditional accuracy (CVAE, cGAN), class entropy and confident share, reconstruction
error (generator), FID of the descriptor-revised samples (coop), training images/s, wall time.

    python -m benchmarks.image_quality [--data-dir ../shared/data/mnist/raw] [--only vae cgan ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import DATA, RESULTS, Figure, Options, run_quietly
from benchmarks.machine import describe

RUNS = {  # name: (family, overrides)
    "vae": ("vae", ["variant=vae"]),
    "conv-vae": ("vae", ["variant=conv-vae"]),
    "cvae": ("vae", ["variant=cvae"]),
    "dcgan": ("gan", ["variant=dcgan"]),
    "cgan": ("gan", ["variant=cgan"]),
    "descriptor": ("descriptor", []),
    "generator": ("generator", []),
    "coop": ("coop", []),
}
COLUMNS = [
    "eval/fid_lenet",
    "eval/fid_lenet_floor",
    "eval/fid_lenet_train_test",
    "eval/neg_elbo",
    "eval/iw_nll",
    "eval/cond_accuracy",
    "eval/class_entropy",
    "eval/confident_fraction",
    "eval/recon_mse",
    "eval/revised_fid_lenet",
    "perf/images_per_sec",
]


def run_flow(family: str, overrides: list[str], data_dir: str, home: Path) -> tuple[dict[str, float], float]:
    """Run one flow through the CLI in a fresh process; return its figures (evaluation, then train/* and perf/*) and
    wall time."""
    sets = [f"data_dir={data_dir}", *overrides]
    command = [
        str(Path(sys.executable).with_name("rlgen")),
        "run",
        family,
        *(arg for pair in sets for arg in ("--set", pair)),
    ]
    seconds, result = run_quietly(command, {"RLGEN_HOME": str(home)}, home / "result.json")
    return result["metrics"], seconds  # the flow's ModelResult


def quality(names: list[str], data_dir: str, extra: list[str]) -> dict[str, dict]:
    """Run each named flow with its defaults (plus `extra`) against one throwaway store; one row of COLUMNS per
    model."""
    rows = {}
    with tempfile.TemporaryDirectory(prefix="rlgen-bench-") as home:
        print(f"{'model':<10} {'minutes':>7} " + " ".join(f"{c.split('/')[-1]:>16}" for c in COLUMNS))
        for name in names:
            family, overrides = RUNS[name]
            metrics, seconds = run_flow(family, overrides + extra, data_dir, Path(home))
            rows[name] = {
                "seconds": round(seconds, 1),
                "epochs": metrics.get("train/epochs"),
                **{c: metrics.get(c) for c in COLUMNS},
            }
            cells = " ".join(f"{metrics[c]:>16.4g}" if c in metrics else f"{'-':>16}" for c in COLUMNS)
            print(f"{name:<10} {seconds / 60:>7.1f} {cells}", flush=True)
    return rows


def figures(opts: Options) -> list[Figure]:
    """The suite's image quality figures (full mode): FID-LeNet (and IW-NLL, conditional accuracy) of every image
    flow."""
    figures = []
    for name, row in quality(list(RUNS), str(DATA / "mnist" / "raw"), [f"device={opts.device}"]).items():
        detail = f"flow in {row['seconds'] / 60:.1f} min, default budget"
        for key, unit in (("eval/fid_lenet", ""), ("eval/iw_nll", "nats"), ("eval/cond_accuracy", "")):
            if row.get(key) is not None:
                figures.append(Figure("image_quality", f"{name}: {key}", row[key], unit, detail, str(opts.device)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA / "mnist" / "raw"))
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra KEY=VALUE for every run")
    args = parser.parse_args()
    rows = quality(args.only, args.data_dir, args.extra)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "image_quality.json"
    kept = (
        json.loads(path.read_text()).get("rows", {}) if path.exists() and not args.extra else {}
    )  # --only updates its rows
    path.write_text(
        json.dumps({"machine": describe(torch.device("cpu")), "rows": kept | rows, "extra": args.extra}, indent=2)
    )


if __name__ == "__main__":
    main()
