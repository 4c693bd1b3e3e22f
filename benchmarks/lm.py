"""Language-model figures: character-level quality after the default (quick) budget on Tiny Shakespeare; word-level
training tokens/s and perplexity of the classic-size LSTM with the full softmax and with the adaptive softmax (same
run, same data, same budget); generation tokens/s of each exported TorchScript module.

Each model is trained by the real flow (`rlgen run lm ...` in a fresh process) against a throwaway store.

    python -m benchmarks.lm [--only char word word-adaptive] [--data-root ../shared/data] [--set KEY=VALUE ...]
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

import torch

from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # name: overrides, given the data root
    "char": lambda root: ["level=char", f"corpus_path={root / 'tinyshakespeare' / 'input.txt'}"],
    "word": lambda root: ["level=word", f"corpus_path={root / 'wikitext-2'}"],
    "word-adaptive": lambda root: ["level=word", f"corpus_path={root / 'wikitext-2'}", "adaptive_softmax=true"],
}
COLUMNS = ["eval/valid_loss", "eval/valid_bpc", "eval/valid_perplexity", "eval/test_perplexity", "perf/tokens_per_sec", "train/seconds", "generate/tokens_per_sec"]


def run_flow(overrides: list[str], home: Path) -> tuple[dict, float]:
    """Run `rlgen run lm` in a fresh process; return its result and wall time."""
    env = {**os.environ, "RLGEN_HOME": str(home), "RLGEN_RESULT_JSON": str(home / "result.json")}
    args = [str(Path(sys.executable).with_name("rlgen")), "run", "lm"]
    for pair in overrides:
        args += ["--set", pair]
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((home / "result.json").read_text()), time.perf_counter() - started


def generation_speed(model: str, home: Path, tokens: int = 2000) -> float:
    """Tokens/s of sampling one stream from the registered TorchScript module (temperature 0.8, top-k 40)."""
    os.environ["RLGEN_HOME"] = str(home)  # the store of this benchmark's runs
    from models.lm import sample
    from tasks.export import load_scripted
    from tasks.lm_data import Vocabulary
    from tasks.play import fetch_exported

    module, metadata = load_scripted(fetch_exported(model, home / "export", "model", "model.pt"))
    vocab = Vocabulary.from_json(metadata["vocab"])
    prompt = torch.tensor(vocab.encode_prompt("ROMEO:" if vocab.level == "char" else "The"))
    sample(module, prompt, 50, module.initial_state(1), 0.8, 40, 0)  # warm-up: TorchScript profiles its first calls
    started = time.perf_counter()
    sample(module, prompt, tokens, module.initial_state(1), 0.8, 40, 0)
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra KEY=VALUE for every run")
    args = parser.parse_args()

    rows = {}
    print(f"{'model':<14} {'minutes':>7} " + " ".join(f"{c.split('/')[-1]:>16}" for c in COLUMNS), flush=True)
    with tempfile.TemporaryDirectory(prefix="rlgen-bench-lm-") as tmp:
        for name in args.only:
            home = Path(tmp) / name
            home.mkdir()
            result, seconds = run_flow(RUNS[name](args.data_root.resolve()) + args.extra, home)
            result["generate/tokens_per_sec"] = generation_speed(str(result["model"]).split("/")[0], home)
            rows[name] = {"wall_seconds": round(seconds, 1), "model": result["model"], **{c: result.get(c) for c in COLUMNS}}
            cells = " ".join(f"{result[c]:>16.4g}" if isinstance(result.get(c), float) else f"{'-':>16}" for c in COLUMNS)
            print(f"{name:<14} {seconds / 60:>7.1f} {cells}", flush=True)
    if {"word", "word-adaptive"} <= set(rows):
        speedup = rows["word-adaptive"]["perf/tokens_per_sec"] / rows["word"]["perf/tokens_per_sec"]
        rows["adaptive_vs_full"] = {"speedup": speedup, "valid_perplexity": [rows["word"]["eval/valid_perplexity"], rows["word-adaptive"]["eval/valid_perplexity"]]}
        print(f"adaptive softmax vs full softmax: {speedup:.2f}x training tokens/s; validation perplexity "
              f"{rows['word-adaptive']['eval/valid_perplexity']:.1f} vs {rows['word']['eval/valid_perplexity']:.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("lm.json" if set(args.only) == set(RUNS) else f"lm-{'-'.join(args.only)}.json")
    out.write_text(json.dumps({"machine": describe(torch.device("cpu")), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
