"""Quality of every image model on the offline MNIST split (8k/1k/1k of the 10k test images), one table.

Each row runs the real flow (`rlgen run vae|gan|descriptor|generator|coop`) with its quick budget, against a throwaway
store, and reads the evaluation back: FID-LeNet with its real-vs-real floor, negative ELBO and
importance-weighted NLL (VAEs), conditional accuracy (CVAE, cGAN), class entropy and confident share, reconstruction error
(generator), FID of the descriptor-revised samples (coop), training images/s, wall time.

    python -m benchmarks.image_quality [--data-dir ../shared/data/mnist/raw] [--only vae cgan ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
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
COLUMNS = ["eval/fid_lenet", "eval/fid_lenet_floor", "eval/fid_lenet_train_test", "eval/neg_elbo", "eval/iw_nll", "eval/cond_accuracy", "eval/class_entropy", "eval/confident_fraction", "eval/recon_mse", "eval/revised_fid_lenet", "perf/images_per_sec"]


def run_flow(family: str, overrides: list[str], data_dir: str, home: Path) -> tuple[dict[str, float], float]:
    """Run one flow through the CLI in a fresh process; return its evaluation and wall time."""
    env = {**os.environ, "RLGEN_HOME": str(home), "RLGEN_RESULT_JSON": str(home / "result.json")}
    args = [str(Path(sys.executable).with_name("rlgen")), "run", family, "--set", f"data_dir={data_dir}"]
    for pair in overrides:
        args += ["--set", pair]
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return json.loads((home / "result.json").read_text()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist" / "raw"))
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra KEY=VALUE for every run")
    args = parser.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory(prefix="rlgen-bench-") as home:
        header = f"{'model':<10} {'minutes':>7} " + " ".join(f"{c.split('/')[-1]:>16}" for c in COLUMNS)
        print(header)
        for name in args.only:
            family, overrides = RUNS[name]
            metrics, seconds = run_flow(family, overrides + args.extra, args.data_dir, Path(home))
            rows[name] = {"seconds": round(seconds, 1), **{c: metrics.get(c) for c in COLUMNS}}
            cells = " ".join(f"{metrics[c]:>16.4g}" if c in metrics else f"{'-':>16}" for c in COLUMNS)
            print(f"{name:<10} {seconds / 60:>7.1f} {cells}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "image_quality.json").write_text(json.dumps({"machine": describe_cpu(), "rows": rows}, indent=2))


def describe_cpu() -> dict:
    import torch

    return describe(torch.device("cpu"))


if __name__ == "__main__":
    main()
