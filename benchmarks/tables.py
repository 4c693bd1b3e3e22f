"""`python -m benchmarks.tables`: the docs' tables of measured figures, generated from benchmarks/results/*.json.

Each table sits in a block of a docs page (docs/*.md, docs/models/*.md) that opens with the line
`<!-- generated: ID (python -m benchmarks.tables) -->` and closes with `<!-- end generated: ID -->`. This rewrites
what lies between the two, and nothing else: a Markdown table per results file, each followed by a line naming the
file, the command that measured it, the machine (benchmarks/machine.py's `describe()`) and the date. A block whose
results file does not exist (yet) says which command measures it. Running it twice changes nothing.

    python -m benchmarks.tables            # rewrite the blocks
    python -m benchmarks.tables --check    # exit 1 if a page is not what would be written (and name the blocks)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.common import RESULTS, ROOT, fmt

DOCS = ROOT / "docs"
BLOCK = re.compile(
    r"(?P<open><!-- generated: (?P<id>[\w.-]+) \(python -m benchmarks\.tables\) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- end generated: (?P=id) -->)",
    re.DOTALL,
)
OPENING = re.compile(r"<!-- generated: ([\w.-]+) ")


class Results(NamedTuple):
    """One results file."""

    path: Path
    data: dict[str, Any]

    @property
    def figures(self) -> list[dict[str, Any]]:
        return list(self.data.get("figures", []))

    @property
    def machine(self) -> dict[str, Any]:
        return dict(self.data.get("machine", {}))


Table = list[str]  # Markdown lines
Render = Callable[[Results], Table | None]  # None: nothing for this block in the file


class Block(NamedTuple):
    files: tuple[str, ...]  # results files (glob patterns under the results folder), in the order shown
    command: str  # what measures them
    render: Render


# --------------------------------------------------------------------------- cells and tables


def cell(value: Any) -> str:
    """A table cell: numbers by benchmarks.common.fmt, text with its pipes escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt(float(value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def minutes(seconds: float | None) -> str:
    """A duration: seconds under a minute, else minutes."""
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def sig(value: float | None, digits: int = 4) -> str:
    """A quality figure to `digits` significant figures (whole numbers from 1,000 up, thousands separated)."""
    if value is None:
        return "-"
    value += 0.0  # -0.0 shows as 0
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], right: Iterable[int] = ()) -> Table:
    """A Markdown table; columns numbered in `right` are right-aligned (figures)."""
    header, aligned = list(header), set(right)
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---:" if i in aligned else "---" for i in range(len(header))) + " |")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def figure_table(figures: list[dict[str, Any]], with_benchmark: bool = True) -> Table | None:
    """Figures one per row: (benchmark,) figure, value, unit, detail."""
    if not figures:
        return None
    rows = [
        [*([f["benchmark"]] if with_benchmark else []), f["name"], f["value"], f["unit"], f["detail"]] for f in figures
    ]
    header = [*(["benchmark"] if with_benchmark else []), "figure", "value", "unit", "detail"]
    return table(header, rows, right=[len(header) - 3])


def source_line(results: Results, note: str = "") -> str:
    """Which file, which command, which machine, when."""
    m = results.machine
    command = results.data.get("command") or m.get("command") or "?"
    machine = [m.get("cpu", "unknown CPU")]
    if m.get("cores"):
        machine[0] += f" ({m['cores']} cores)"
    if m.get("gpu"):
        machine.append(str(m["gpu"]))
    machine += [f"torch threads: {m.get('torch_threads', '?')}", f"torch {m.get('torch', '?')}"]
    if m.get("python"):
        machine.append(f"Python {m['python']}")
    date = m.get("date") or "date not recorded"
    path = results.path.resolve()
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"_From `{where.as_posix()}` (`{command}`), {date}, {', '.join(machine)}{note}._"


# --------------------------------------------------------------------------- the blocks


def suite_quick(results: Results) -> Table | None:
    """The speed benchmarks' headline figures (the others have tables of their own), and any that failed."""
    shown = {"dqn", "images", "langevin", "lm"}
    return figure_table([f for f in results.figures if f["benchmark"] in shown or f["name"] == "FAILED"])


def suite_note(results: Results) -> str:
    data = results.data
    parts = [f"{data.get('mode', '?')} mode"]
    if data.get("total_seconds") is not None:
        parts.append(f"{data['total_seconds'] / 60:.1f} min in all")
    load = data.get("load_average") or {}
    if load:
        parts.append(f"load average {load.get('before', 0):.2f} before, {load.get('after', 0):.2f} after")
    if data.get("failed"):
        parts.append(f"failed: {', '.join(data['failed'])}")
    return "; " + "; ".join(parts)


def export_speed(results: Results) -> Table | None:
    """Per module: batch-1 latency and large-batch throughput of TorchScript, eager and .pt2."""
    modules: dict[str, dict[str, dict[str, Any]]] = {}
    for f in results.figures:
        module, _, batch = f["name"].rpartition(", batch ")
        modules.setdefault(module, {})["1" if batch == "1" else "large"] = f | {"batch": batch}
    rows = []
    for module, by in modules.items():
        small, large = by.get("1", {}), by.get("large", {})
        ms = small.get("extra", {}).get("ms", {})
        unit = large.get("unit", "items/s")
        rate = large.get("extra", {}).get(unit, {})
        batch = f"{large.get('batch', '-')} {unit.removesuffix('/s')}" if large else "-"
        runtimes = ("torchscript", "eager", "pt2")
        rows.append([module, *(ms.get(r) for r in runtimes), batch, *(rate.get(r) for r in runtimes)])
    if not rows:
        return None
    header = ["module", "batch 1: TorchScript (ms)", "eager (ms)", ".pt2 (ms)", "large batch"]
    header += ["TorchScript (items/s)", "eager (items/s)", ".pt2 (items/s)"]
    return table(header, rows, right=[1, 2, 3, 5, 6, 7])


def overhead(results: Results) -> Table | None:
    return figure_table(results.figures, with_benchmark=False)


def image_speed(results: Results) -> Table | None:
    """Training images/s of every image model, the DataLoader comparison, and the Langevin chains' steps/s."""
    return figure_table(results.figures)


def threads(results: Results) -> Table | None:
    """One row per training step: one process at 1 and 2 threads, two processes at 1 and 2 threads each."""
    columns = [("1 process", 1), ("1 process", 2), ("2 processes (sum)", 1), ("2 processes (sum)", 2)]
    rows: dict[str, dict[tuple[str, int], float]] = {}
    units: dict[str, str] = {}
    for f in results.figures:
        label, _, kind = f["name"].rpartition(", ")
        rows.setdefault(label, {})[(kind, f["threads"])] = f["value"]
        units[label] = f["unit"]
    if not rows:
        return None
    header = ["training step", "unit", "1 process, 1 thread", "1 process, 2 threads"]
    header += ["2 processes, 1 thread each (sum)", "2 processes, 2 threads each (sum)"]
    body = [[label, units[label], *(values.get(c) for c in columns)] for label, values in rows.items()]
    return table(header, body, right=[2, 3, 4, 5])


def walls(results: Results) -> dict[int, dict[str, Any]]:
    """The pipeline's `concurrency C: wall` figures by C."""
    found = {}
    for f in results.figures:
        match = re.fullmatch(r"concurrency (\d+): wall", f["name"])
        if match:
            found[int(match.group(1))] = f
    return dict(sorted(found.items()))


def pipeline_concurrency(results: Results) -> Table | None:
    by = walls(results)
    if not by:
        return None
    alone = by.get(1, {}).get("value")
    rows = [
        [c, f["threads"], f"{f['value']:.1f} min", f"{alone / f['value']:.2f}x" if alone and c != 1 else "-"]
        for c, f in by.items()
    ]
    header = ["concurrency", "torch threads per branch", "wall time", "speed-up over concurrency 1"]
    return table(header, rows, right=range(4))


def pipeline_branches(results: Results) -> Table | None:
    by = walls(results)
    names = sorted({name for f in by.values() for name in f.get("extra", {}).get("branch_seconds", {})})
    if not names:
        return None
    header = ["branch", *(f"concurrency {c}, {f['threads']} thread(s) per branch" for c, f in by.items())]
    rows = [[name, *(minutes(f["extra"]["branch_seconds"].get(name)) for f in by.values())] for name in names]
    return table(header, rows, right=range(1, len(header)))


def dqn_cartpole(results: Results) -> Table | None:
    rows = results.data.get("rows", [])
    if not rows:
        return None
    header = ["seed", "env steps", "training wall time", "env steps/s", "eval mean return", "eval min", "solved"]
    body = [
        [
            r["seed"],
            r["env_steps"],
            f"{r['train_seconds']:.1f} s",
            r["env_steps_per_sec"],
            f"{r['eval_mean_return']:.1f}",
            f"{r['eval_min_return']:.0f}",
            r["solved"],
        ]
        for r in rows
    ]
    return table(header, body, right=range(0, 6))


def dqn_note(results: Results) -> str:
    data = results.data
    median = data.get("median_steps_to_solve")
    solved = f"; solved {data.get('seeds_solved', '?')}"
    if median is not None:
        solved += f", median {fmt(median)} steps to solve"
    return solved + f", median training time {data.get('median_train_seconds', 0):.1f} s"


def dqn_options(results: Results) -> Table | None:
    """Steps to solve per option: each variant is the reference config plus its overrides; `default` is rlgen's."""
    variants = results.data.get("variants", {})
    if not variants:
        return None
    header = ["variant", "overrides", "solved", "median steps to solve", "range", "false solves", "median seconds"]
    body = [
        [
            name,
            ", ".join(f"{k}={v}" for k, v in v["overrides"].items())
            or ("(rlgen's defaults)" if name == "default" else "(the reference config)"),
            f"{v['solved']}/{v['seeds']}",
            v["median_steps"],
            f"{v['min_steps']}-{v['max_steps']}",
            str(v["false_solves"]),
            f"{v['median_seconds']:.1f} s",
        ]
        for name, v in variants.items()
    ]
    return table(header, body, right=range(2, 7))


def dqn_options_note(results: Results) -> str:
    data = results.data
    seeds = data.get("seeds", [])
    span = f"{min(seeds)}-{max(seeds)}" if seeds else "?"
    return (
        f"; seeds {span}, budget {fmt(data.get('total_steps', 0))} steps (an unsolved seed counts as the budget); "
        f"{data.get('machine', {}).get('workers', '?')} worker processes at once: compare seconds within this table"
    )


def dqn_pixels(results: Results) -> Table | None:
    summary = results.data.get("summary", {})
    if not summary:
        return None
    rows = results.data.get("rows", [])
    header = ["observations", "seed", "env steps", "training wall time", "first confirmed solve", "eval mean return"]
    body = [
        [
            r["obs_mode"],
            r["seed"],
            r["env_steps"],
            minutes(r["train_seconds"]),
            r["first_solved_step"],
            f"{r['eval_mean_return']:.1f}",
        ]
        for r in rows
    ]
    return table(header, body, right=range(1, 6))


def quality_rows(results: Results, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    rows = results.data.get("rows", {})
    return {name: rows[name] for name in names if name in rows}


def image_quality(results: Results) -> Table | None:
    rows = quality_rows(results, ("vae", "conv-vae", "cvae", "dcgan", "cgan"))
    if not rows:
        return None
    header = ["model", "epochs", "wall time", "FID-LeNet", "test neg. ELBO (nats)", "IW-NLL (nats)"]
    header += ["conditional accuracy", "class entropy (nats)", "confident share", "training images/s"]
    body = [
        [
            name,
            r.get("epochs"),
            minutes(r.get("seconds")),
            *(sig(r.get(k)) for k in ("eval/fid_lenet", "eval/neg_elbo", "eval/iw_nll")),
            percent(r.get("eval/cond_accuracy")),
            *(sig(r.get(k), 3) for k in ("eval/class_entropy", "eval/confident_fraction")),
            sig(r.get("perf/images_per_sec")),
        ]
        for name, r in rows.items()
    ]
    floors = next((r for r in rows.values() if r.get("eval/fid_lenet_floor") is not None), None)
    if floors is not None:
        reference = f"{sig(floors['eval/fid_lenet_floor'])} / {sig(floors.get('eval/fid_lenet_train_test'))}"
        body.append(["real vs real: test halves / train vs test", None, None, reference, *[None] * 6])
    return table(header, body, right=range(1, len(header)))


def langevin_quality(results: Results) -> Table | None:
    rows = quality_rows(results, ("descriptor", "generator", "coop"))
    if not rows:
        return None
    reference = quality_rows(results, ("dcgan",))
    header = ["model", "epochs", "wall time", "FID-LeNet", "class entropy (nats)", "confident share"]
    header += ["recon MSE (per pixel)", "revised samples' FID-LeNet", "training images/s"]
    labels = {"dcgan": "dcgan, for reference"}
    body = [
        [
            labels.get(name, name),
            r.get("epochs"),
            minutes(r.get("seconds")),
            sig(r.get("eval/fid_lenet")),
            *(sig(r.get(k), 3) for k in ("eval/class_entropy", "eval/confident_fraction", "eval/recon_mse")),
            sig(r.get("eval/revised_fid_lenet")),
            sig(r.get("perf/images_per_sec")),
        ]
        for name, r in (rows | reference).items()
    ]
    return table(header, body, right=range(1, len(header)))


def langevin_curves(results: Results) -> Table | None:
    """Per model: the val FID-LeNet per seed after its default epochs and at the end (twice as many, with
    --budget-factor 2), the best (medians over seeds), the kept epochs, and DCGAN's val FID within the same time."""
    summary = results.data.get("summary", {})
    if not summary:
        return None

    def per_seed(values: list[float | None]) -> str:
        return ", ".join("-" if v is None else sig(v) for v in values)

    header = ["model", "default epochs", "epochs trained", "seeds", "val FID after the default epochs, per seed"]
    header += ["val FID at the end, per seed", "best val FID (median)", "kept epoch per seed", "training time"]
    header += ["its val FID vs DCGAN's in the same time, per seed"]
    body = [
        [
            name,
            s.get("default_epochs", s["epochs"]),
            s["epochs"],
            s["seeds"],
            per_seed(s.get("at_default", [])),
            per_seed(s.get("at_end", [])),
            sig(s["best_val_fid_median"]),
            ", ".join(str(e) for e in s["kept_epochs"]),
            minutes(s["train_seconds_median"]),
            ", ".join(f"{per_seed([a])} vs {per_seed([b])}" for a, b, _ in s.get("versus_dcgan", [])) or "-",
        ]
        for name, s in summary.items()
    ]
    figure = ROOT / "docs" / "figures" / "langevin_val_fid.png"
    shown = Path(results.data.get("figure", "")).resolve() == figure and figure.is_file()
    plot = ["", "![Validation FID-LeNet after each epoch](../figures/langevin_val_fid.png)"] if shown else []
    return table(header, body, right=range(1, len(header))) + plot


def langevin_curves_note(results: Results) -> str:
    rows = results.data.get("rows", [])
    samples = rows[0].get("val_fid_samples", "?") if rows else "?"
    return f"; medians over seeds; {samples} prior samples per score against the validation split"


def lm_quality(results: Results) -> Table | None:
    rows = {name: r for name, r in results.data.get("rows", {}).items() if "model" in r}
    if not rows:
        return None
    header = ["run", "model", "flow wall time", "training time", "valid loss (nats/token)", "valid bits/char"]
    header += ["valid perplexity", "test perplexity", "training tokens/s", "generation tokens/s"]
    keys = ["eval/valid_loss", "eval/valid_bpc", "eval/valid_perplexity", "eval/test_perplexity"]
    keys += ["perf/tokens_per_sec", "generate/tokens_per_sec"]
    body = [
        [name, r["model"], minutes(r.get("wall_seconds")), minutes(r.get("train/seconds"))]
        + [sig(r.get(k)) for k in keys]
        for name, r in rows.items()
    ]
    return table(header, body, right=range(2, len(header)))


def lm_note(results: Results) -> str:
    versus = results.data.get("rows", {}).get("adaptive_vs_full")
    if not versus:
        return ""
    full, adaptive = versus["valid_perplexity"]
    return (
        f"; adaptive vs full softmax: {versus['speedup']:.2f}x the training tokens/s, validation perplexity "
        f"{sig(adaptive)} against {sig(full)}"
    )


def at(rows: dict[int, dict[str, Any]], epoch: int, key: str) -> str:
    """The figure `key` of epoch `epoch`, or a dash."""
    return fmt(rows[epoch][key]) if epoch in rows and key in rows[epoch] else "-"


def langevin_study(results: Results) -> Table | None:
    """Per variant: val FID-LeNet and the latents' std at epochs 8, 16 and 32 (where trained), and the best epoch."""
    runs = results.data.get("runs", [])
    if not runs:
        return None
    marks = (8, 16, 32)
    header = ["run", "settings", "epochs", *(f"val FID @{e}" for e in marks), "best epoch (FID)"]
    header += [f"z std @{e}" for e in marks]
    body = []
    for run in runs:
        rows = {r["epoch"]: r for r in run["rows"]}
        scored = [r for r in run["rows"] if "val/fid_lenet" in r]
        best = min(scored, key=lambda r: r["val/fid_lenet"]) if scored else None

        body.append(
            [
                run["name"],
                ", ".join(s for s in run["sets"] if not s.startswith("epochs=")) or "(defaults)",
                str(max(rows)),
                *(at(rows, e, "val/fid_lenet") for e in marks),
                f"{best['epoch']} ({fmt(best['val/fid_lenet'])})" if best else "-",
                *(at(rows, e, "train/latent_std") for e in marks),
            ]
        )
    return table(header, body, right=range(2, len(header)))


def chaos(results: Results) -> Table | None:
    """Per family: kills survived, the metric rows against the uninterrupted run, and the final weights."""
    rows = results.data.get("rows", [])
    if not rows:
        return None
    header = ["family", "kills", "killed after checkpoint steps", "steps", "lost", "duplicated", "extra"]
    header += ["unequal", "weights", "seconds"]
    body = [
        [
            r["family"],
            str(r["kills"]),
            ", ".join(str(k) for k in r["killed_after"]),
            f"{r['steps']} of {r['reference_steps']}",
            *(str(r[key]) for key in ("lost", "duplicated", "extra", "unequal")),
            "bitwise equal" if r["bitwise"] else f"max abs diff {fmt(r['max_abs_diff'])} ({r['promise']})",
            f"{r['seconds']:.0f} s",
        ]
        for r in rows
    ]
    return table(header, body, right=(1, 4, 5, 6, 7, 9))


def serving(results: Results) -> Table | None:
    return figure_table(results.data["figures"], with_benchmark=False)


NOTES: dict[Render, Callable[[Results], str]] = {
    suite_quick: suite_note,
    dqn_cartpole: dqn_note,
    dqn_options: dqn_options_note,
    lm_quality: lm_note,
    langevin_curves: langevin_curves_note,
}

BLOCKS: dict[str, Block] = {
    "suite-quick": Block(("suite.json",), "python -m benchmarks --quick", suite_quick),
    "export-speed": Block(("export_speed.json",), "python -m benchmarks.export_speed", export_speed),
    "overhead": Block(("overhead.json",), "python -m benchmarks.overhead", overhead),
    "threads": Block(("threads.json",), "python -m benchmarks.threads", threads),
    "pipeline-concurrency": Block(("pipeline.json",), "python -m benchmarks.pipeline", pipeline_concurrency),
    "pipeline-branches": Block(("pipeline.json",), "python -m benchmarks.pipeline", pipeline_branches),
    "dqn-cartpole": Block(("dqn_cartpole.json",), "python -m benchmarks.dqn_cartpole", dqn_cartpole),
    "dqn-report": Block(
        ("dqn_report.json",),
        "python -m benchmarks.dqn_options --variants default zoo zoo+confirm --seeds 1 2 3 4 5 6 7 8 9 10 "
        "--out dqn_report.json",
        dqn_options,
    ),
    "dqn-options": Block(("dqn_options*.json",), "python -m benchmarks.dqn_options", dqn_options),
    "dqn-pixels": Block(("dqn_pixels.json",), "python -m benchmarks.dqn_pixels", dqn_pixels),
    "image-quality": Block(("image_quality.json",), "python -m benchmarks.image_quality", image_quality),
    "image-speed": Block(("image_speed.json",), "python -m benchmarks.image_speed", image_speed),
    "langevin-quality": Block(
        ("image_quality.json",),
        "python -m benchmarks.image_quality --only descriptor generator coop",
        langevin_quality,
    ),
    "langevin-study": Block(
        ("langevin_study.json",),
        "python -m benchmarks.langevin_study train ... then score (its docstring)",
        langevin_study,
    ),
    "langevin-curves": Block(("langevin_curves.json",), "python -m benchmarks.langevin_curves", langevin_curves),
    "lm-quality": Block(("lm.json", "lm-*.json"), "python -m benchmarks.lm", lm_quality),
    "serving": Block(("serving.json",), "python -m benchmarks.serving", serving),
    "chaos": Block(("chaos.json",), "python -m benchmarks.chaos", chaos),
}


# --------------------------------------------------------------------------- the pages


def load(results_dir: Path, patterns: tuple[str, ...]) -> list[Results]:
    """The results files a block reads, each once, in pattern order then by name."""
    paths: list[Path] = []
    for pattern in patterns:
        paths += [p for p in sorted(results_dir.glob(pattern)) if p not in paths]
    return [Results(p, json.loads(p.read_text())) for p in paths]


def body(block_id: str, results_dir: Path) -> str:
    """What goes between a block's markers: its tables with their source lines, or how to measure it."""
    block = BLOCKS[block_id]
    parts = []
    for results in load(results_dir, block.files):
        rendered = block.render(results)
        if rendered:
            note = NOTES.get(block.render, lambda r: "")(results)
            parts.append("\n".join([*rendered, "", source_line(results, note)]))
    if not parts:
        return f"_Not yet measured: run `{block.command}`._\n"
    return "\n\n".join(parts) + "\n"


def pages(docs: Path) -> list[Path]:
    return sorted([*docs.glob("*.md"), *docs.glob("models/*.md")])


def rewrite(text: str, results_dir: Path, where: str) -> str:
    """`text` with every block's body generated; SystemExit naming a block this module does not know, or a block
    whose closing marker is missing."""
    opened = OPENING.findall(text)
    closed = [m.group("id") for m in BLOCK.finditer(text)]
    if opened != closed:
        unclosed = sorted(set(opened) - set(closed)) or opened
        raise SystemExit(f"{where}: block(s) {', '.join(unclosed)} lack their `<!-- end generated: ID -->` line")
    unknown = sorted(set(closed) - set(BLOCKS))
    if unknown:
        raise SystemExit(f"{where}: unknown block(s) {', '.join(unknown)}; known: {', '.join(BLOCKS)}")
    return BLOCK.sub(lambda m: m.group("open") + body(m.group("id"), results_dir) + m.group("close"), text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page would change")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: %(default)s)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs folder (default: %(default)s)")
    args = parser.parse_args()
    stale, seen = [], set()
    for page in pages(args.docs):
        text = page.read_text()
        seen |= {m.group("id") for m in BLOCK.finditer(text)}
        new = rewrite(text, args.results, str(page))
        if new == text:
            continue
        stale.append(page)
        if not args.check:
            page.write_text(new)
    missing = sorted(set(BLOCKS) - seen)
    if missing:
        print(f"note: no page has the block(s) {', '.join(missing)}", file=sys.stderr)
    if args.check:
        for page in stale:
            print(f"{page}: generated tables are out of date; run `python -m benchmarks.tables`", file=sys.stderr)
        raise SystemExit(1 if stale else 0)
    for page in stale:
        print(f"rewrote {page}")


if __name__ == "__main__":
    main()
