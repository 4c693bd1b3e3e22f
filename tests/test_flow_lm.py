"""`rlgen run lm` end to end at both levels on the real offline corpora with tiny budgets, then `rlgen generate`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import model_files
from mlflow.tracking import MlflowClient
from test_flow_images import sets
from typer.testing import CliRunner

from rlgen.cli import app

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = [
    "hidden=16",
    "embedding=16",
    "layers=1",
    "batch_size=4",
    "max_steps=6",
    "eval_every=3",
    "eval_batch_size=64",
    "sample_tokens=20",
    "log_every=2",
]
LEVELS = {
    "char": (
        ["level=char", f"corpus_path={SHARED / 'tinyshakespeare' / 'input.txt'}", "bptt=16"],
        "lm-char-tinyshakespeare",
    ),
    "word": (
        ["level=word", f"corpus_path={SHARED / 'wikitext-2'}", "bptt=8", "adaptive_softmax=true", "cutoffs=2000,10000"],
        "lm-word-wikitext-2",
    ),
}

pytestmark = pytest.mark.skipif(
    not (SHARED / "wikitext-2" / "valid.txt").is_file(), reason=f"the offline corpora are not in {SHARED}"
)


@pytest.mark.parametrize("level", list(LEVELS))
def test_lm_flow_records_evaluates_exports_and_generates(rlgen, store: Path, level: str) -> None:
    keys, name = LEVELS[level]
    rlgen("run", "lm", *sets([*TINY, *keys]))
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    (version,) = client.search_model_versions(f"name='{name}'")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["rlgen.family"] == "lm" and version.tags["level"] == level
    assert (
        client.get_model_version_by_alias(name, "champion").version == version.version
    )  # the first version is champion
    metrics = run.data.metrics
    assert metrics["train/steps"] == 6 and metrics["perf/tokens_per_sec"] > 0 and metrics["train/best_step"] in (3, 6)
    assert [m.step for m in client.get_metric_history(version.run_id, "val/loss")] == [3, 6]
    assert [m.step for m in client.get_metric_history(version.run_id, "train/loss")] == [2, 4, 6]
    assert metrics["export/max_abs_diff"] <= 1e-5  # log-probabilities and the state
    assert metrics["export/pt2_max_abs_diff"] <= 1e-5
    vocab_size = 65 if level == "char" else 18_328
    assert (
        1 < metrics["eval/valid_perplexity"] < vocab_size * 1.5
    )  # barely trained: near uniform, well below a broken model's

    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    params = parent.data.params
    assert params["data.vocab_size"] == str(vocab_size)
    if level == "char":
        assert metrics["eval/valid_bpc"] == pytest.approx(metrics["eval/valid_loss"] / 0.6931471805599453)
        assert "eval/test_loss" not in metrics and "no separate test split" in run.data.tags["rlgen.metric_notes"]
        assert params["data.split.rule"] == "single_file" and params["data.split.sizes.train"] == "1003854"
        assert params["data.files.single.verified"] == "true"
    else:
        assert metrics["eval/test_perplexity"] > 1
        assert params["data.split.rule"] == "valid_test_only" and params["data.split.sizes.train"] == "217646"
        assert params["data.files.valid.verified"] == params["data.files.test.verified"] == "true"

    artifacts = {
        f.path
        for d in ("samples", "evaluation", "plots", "checkpoints")
        for f in client.list_artifacts(version.run_id, d)
    }
    assert {
        "samples/epoch_001_step_000003.txt",
        "samples/epoch_001_step_000006.txt",
        "evaluation/samples_t0.5.txt",
        "evaluation/samples_t0.8.txt",
        "evaluation/samples_t1.0.txt",
        "evaluation/report.json",
        "plots/learning_curve.png",
        "checkpoints/lm.pt",
    } <= artifacts
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "data")} == {"data/vocab.json"}
    assert {"MLmodel", "artifacts/model.pt", "artifacts/model.pt2", "artifacts/vocab.json"} <= model_files(client, name)

    # generate in this process (the store fixture points it at the same store): the CLI's imports cost ~8 s a call
    prompt = "ROMEO:" if level == "char" else "The game"
    args = ["generate", "--model", name, "--prompt", prompt, "--tokens", "30", "--seed", "5"]
    first, again = (CliRunner().invoke(app, args) for _ in range(2))
    assert first.exit_code == 0 and first.output.startswith(prompt) and first.output == again.output
    if level == "char":
        assert len(first.output) == len(prompt) + 30 + 1  # and the final newline
        refused = CliRunner().invoke(app, [*args[:3], "--prompt", "Ωmega"])
        assert refused.exit_code == 2 and "not in the vocabulary" in refused.output
    else:
        assert len(first.output.split()) == 2 + 30 - first.output.count("\n") + 1  # <eos> tokens print as line breaks
