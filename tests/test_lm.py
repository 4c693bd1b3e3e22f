"""Language models: streams and BPTT windows, detached state, perplexity, learning, vocabulary, sampling,
TorchScript parity including the state, corpus prep (splits, hashes, cache, downloads) and config checks."""

from __future__ import annotations

import hashlib
import math
import re
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from models import lm
from models.training import Report
from rlgen.cli import app
from rlgen.config import ConfigError, validate_config
from rlgen.data import corpora, vocabulary
from rlgen.errors import DataError
from rlgen.export.parity import check_parity
from rlgen.export.torchscript import load_scripted, script_module
from rlgen.families.lm import LMConfig
from rlgen.families.lm.trainer import LMTrainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "wikitext-2" / "valid.txt").is_file(), reason=f"the offline corpora are not in {SHARED}"
)


def graph_size(tensor: torch.Tensor) -> int:
    """Autograd nodes reachable from tensor.grad_fn."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(next_fn for next_fn, _ in node.next_functions)
    return len(seen)


def test_batchify_and_bptt_windows_on_a_known_sequence() -> None:
    streams = lm.batchify(torch.arange(11), 2)  # the 11th token does not fill a stream and is dropped
    assert streams.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    windows = list(lm.bptt_windows(streams, 3))
    assert [(x.tolist(), y.tolist()) for x, y in windows] == [
        ([[0, 1, 2], [5, 6, 7]], [[1, 2, 3], [6, 7, 8]]),
        ([[3], [8]], [[4], [9]]),
    ]
    assert lm.windows_per_pass(streams, 3) == 2 and lm.windows_per_pass(streams, 4) == 1
    with pytest.raises(ValueError, match="3 tokens cannot fill 2 streams"):
        lm.batchify(torch.arange(3), 2)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_state_is_detached_between_windows_so_the_graph_does_not_grow(cell: str) -> None:
    torch.manual_seed(0)
    model = lm.RNNModel(20, 8, 8, 2, cell, dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    streams = lm.batchify(torch.randint(0, 20, (4 * 61,)), 4)
    state, sizes = model.initial_state(4), []
    for x, y in lm.bptt_windows(streams, 6):
        stats, state = lm.train_step(model, optimizer, x, y, state, clip=0.5)
        assert all(s.grad_fn is None and not s.requires_grad for s in state)
        loss, _ = model.nll(x, y, state)  # the graph of one window from the carried state
        sizes.append(graph_size(loss))
        assert float(stats["train/grad_norm"]) >= 0
    assert len(sizes) == 10 and len(set(sizes)) == 1
    assert state[0].abs().sum() > 0  # the values did carry over


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size() -> None:
    model = lm.RNNModel(37, 8, 8, 1)
    torch.nn.init.zeros_(model.head.decoder.weight)
    torch.nn.init.zeros_(model.head.decoder.bias)
    loss = lm.evaluate(model, lm.batchify(torch.randint(0, 37, (500,)), 5), bptt=7)
    assert math.exp(loss) == pytest.approx(37, rel=1e-6)


def train(trainer: LMTrainer) -> tuple[list[float], list[Report]]:
    """Run a trainer to its end without the driver: its step losses and its reports."""
    losses, reports = [], []
    while not trainer.done():
        losses.append(float(trainer.step()["train/loss"]))
        reports += trainer.reports()
    trainer.finish()
    return losses, reports


def test_a_small_model_memorizes_a_tiny_corpus() -> None:
    torch.manual_seed(0)
    vocab = vocabulary.Vocabulary.build([list("the quick brown fox jumps over the lazy dog\n")], "char")
    ids = torch.tensor(vocab.encode(list("the quick brown fox jumps over the lazy dog\n" * 4)))
    model = lm.RNNModel(len(vocab), 16, 64, 1, dropout=0.0)
    cfg = LMConfig(
        lr=1e-2, bptt=44, epochs=100, clip=1.0, anneal=0.5, patience=5, eval_batch_size=1, log_every=20, sample_tokens=5
    )
    trainer = LMTrainer(cfg, model, lm.batchify(ids, 1), ids, vocab, "the", torch.device("cpu"))
    losses, reports = train(trainer)
    assert trainer.best < 0.05, trainer.best
    assert lm.evaluate(model, lm.batchify(ids, 1), 44) == pytest.approx(
        trainer.best, rel=1e-5
    )  # finish() kept the best
    assert losses[-1] < 0.1 * losses[0]
    assert any("perf/tokens_per_sec" in r.metrics for r in reports) and any(r.texts for r in reports)


def test_annealing_and_early_stopping() -> None:
    torch.manual_seed(0)
    model = lm.RNNModel(10, 4, 4, 1)
    vocab = vocabulary.Vocabulary(list("0123456789"), "char")
    data = torch.randint(0, 10, (400,))
    # too small a learning rate to improve: every validation after the first is "worse"
    cfg = LMConfig(
        optimizer="sgd",
        lr=1e-9,
        bptt=10,
        epochs=50,
        clip=0.0,
        anneal=0.5,
        patience=2,
        eval_every=5,
        eval_batch_size=2,
        sample_tokens=1,
    )
    trainer = LMTrainer(cfg, model, lm.batchify(data, 2), data, vocab, "0", torch.device("cpu"))
    train(trainer)
    assert trainer.stopped and trainer.steps <= 15 and trainer.optimizer.param_groups[0]["lr"] <= 0.25e-9 * 1.0001


def test_adaptive_softmax_loss_matches_its_log_probabilities() -> None:
    torch.manual_seed(0)
    head = lm.AdaptiveSoftmax(16, 50, (5, 20))
    x, y = torch.randn(64, 16), torch.randint(0, 50, (64,))
    logp = head.log_prob(x)  # (64, 50)
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(64))
    torch.testing.assert_close(head.loss(x, y), -logp.gather(1, y[:, None]).mean())
    with pytest.raises(ValueError, match="below the vocabulary size 50"):
        lm.AdaptiveSoftmax(16, 50, (5, 50))


def test_vocabulary_round_trip_and_unknown_tokens(tmp_path: Path) -> None:
    text = "the cat sat\non the mat\n"
    words = vocabulary.Vocabulary.build([vocabulary.tokenize(text, "word")], "word")
    assert words.tokens[:2] == ["<eos>", "the"] and "<unk>" in words.tokens  # by frequency; <unk> always present
    ids = words.encode(vocabulary.tokenize(text, "word"))
    assert words.decode(ids) == text
    assert words.decode(words.encode(["the", "dog"])) == "the <unk>"
    assert words.decode(words.encode_prompt("on the\nmat")) == "on the\nmat"  # <eos> between lines, none after
    again = vocabulary.Vocabulary.from_json(words.to_json())
    assert again.tokens == words.tokens and again.level == "word"

    chars = vocabulary.Vocabulary.build([list("abca\n")], "char")
    assert chars.tokens == ["a", "\n", "b", "c"] and chars.decode(chars.encode(list("cab\n"))) == "cab\n"
    with pytest.raises(ValueError, match=r"characters 'z' are not in the vocabulary of 4 characters"):
        chars.encode_prompt("az")
    with pytest.raises(ValueError, match="not an rlgen vocabulary"):
        vocabulary.Vocabulary.from_json({"tokens": ["a"]})


def test_generation_is_deterministic_for_a_seed() -> None:
    torch.manual_seed(0)
    vocab = vocabulary.Vocabulary.build([list("abcdefghij \n")], "char")
    model = lm.RNNModel(len(vocab), 8, 16, 1)
    first = vocabulary.generate(model, vocab, "abc", 100, 1.0, seed=3)
    assert first == vocabulary.generate(model, vocab, "abc", 100, 1.0, seed=3)
    assert first != vocabulary.generate(model, vocab, "abc", 100, 1.0, seed=4)
    assert first.startswith("abc") and len(first) == 103
    greedy = vocabulary.generate(model, vocab, "abc", 30, 0.0, seed=1)
    assert greedy == vocabulary.generate(model, vocab, "abc", 30, 1.0, seed=2, top_k=1)
    assert model.training  # generate restores the mode it found


@pytest.mark.parametrize(("cell", "cutoffs", "tied"), [("lstm", (), True), ("gru", (8, 20), False), ("rnn", (), False)])
def test_torchscript_export_matches_eager_including_the_state(
    tmp_path: Path, cell: str, cutoffs: tuple, tied: bool
) -> None:
    torch.manual_seed(0)
    export = lm.LMExport(lm.RNNModel(40, 12, 12, 2, cell, 0.3, tie_weights=tied, cutoffs=cutoffs)).eval()
    warm, tokens = torch.randint(0, 40, (3, 5)), torch.randint(0, 40, (3, 7))
    with torch.no_grad():
        _, h, c = export(warm, *export.initial_state(3))
        expected = {"log_probs": export.log_probs(tokens, h, c), "state": export.state(tokens, h, c)}
    assert h.abs().sum() > 0 and expected["log_probs"].shape == (3, 7, 40) and expected["state"].shape == (2, 2, 3, 12)
    path = script_module(export, tmp_path / "lm.pt", {"family": "lm"})
    parity = check_parity(path, (tokens, h, c), expected)
    assert parity["log_probs"].max_abs_diff <= 1e-5 and parity["state"].max_abs_diff <= 1e-5

    scripted, metadata = load_scripted(path)
    assert metadata == {"family": "lm"}
    with torch.no_grad():  # stepping one token at a time carries the same state as running the sequence
        state = (h, c)
        for t in range(tokens.size(1)):
            logp, *state = scripted(tokens[:, t : t + 1], *state)
        torch.testing.assert_close(logp[:, 0], expected["log_probs"][:, -1], atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.stack(state), expected["state"], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- corpus prep


def test_single_file_split_rule_and_content_hashed_cache(tmp_path: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    (tmp_path / "tiny.txt").write_text(text)
    first = corpora.prepare_corpus("char", "custom", tmp_path / "tiny.txt", tmp_path / "cache", tmp_path)
    assert first.provenance["split"]["rule"] == "single_file" and not first.reused
    assert first.sizes["train"] == int(len(text) * 0.9) and first.sizes["valid"] == len(text) - int(len(text) * 0.9)
    data = corpora.load_corpus(first.path)
    vocab = corpora.load_vocabulary(first.vocab_path)
    assert vocab.decode(torch.cat([data["train"], data["valid"]]).tolist()) == text and torch.equal(
        data["valid"], data["test"]
    )
    again = corpora.prepare_corpus("char", "custom", tmp_path / "tiny.txt", tmp_path / "cache", tmp_path)
    assert again.reused and again.path == first.path and again.vocab_path == first.vocab_path
    words = corpora.prepare_corpus(
        "word", "custom", tmp_path / "tiny.txt", tmp_path / "cache", tmp_path, val_fraction=0.2
    )
    assert (
        words.sizes["train"] == 80 * 3 and words.path != first.path
    )  # whole lines: 80 of 100 (two words and <eos> each)


def test_a_folder_without_train_trains_on_valid_and_splits_test(tmp_path: Path) -> None:
    (tmp_path / "valid.txt").write_text("a b c\n" * 10)
    (tmp_path / "test.txt").write_text("d e\n" * 6)
    prepared = corpora.prepare_corpus("word", "custom", tmp_path, tmp_path / "cache", tmp_path)
    assert prepared.provenance["split"]["rule"] == "valid_test_only"
    assert prepared.sizes == {"train": 40, "valid": 9, "test": 9}


def test_missing_and_corrupt_files_are_data_errors(tmp_path: Path) -> None:
    nowhere = re.escape(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=rf"^corpus_path {nowhere} does not exist; pass a text file or a folder of "):
        corpora.prepare_corpus("char", "custom", tmp_path / "nowhere", tmp_path / "cache", tmp_path)
    (tmp_path / "input.txt").write_text("To be, or not to be\n")
    with pytest.raises(DataError, match=r"input.txt has SHA-256 .*, expected 86c4e6aa.* corpus=custom"):
        corpora.prepare_corpus("char", "tinyshakespeare", tmp_path / "input.txt", tmp_path / "cache", tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "test.txt").write_text("x\n")
    with pytest.raises(DataError, match="holds no usable split.*found test.txt"):
        corpora.prepare_corpus("word", "custom", tmp_path / "empty", tmp_path / "cache", tmp_path)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt is not UTF-8 text"):
        corpora.prepare_corpus("char", "custom", tmp_path / "latin1.txt", tmp_path / "cache", tmp_path)


@needs_shared
def test_downloads_are_verified_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = (SHARED / "tinyshakespeare" / "input.txt").as_uri()  # a file:// URL stands in for the network
    folder = corpora.download("tinyshakespeare", tmp_path / "data", url=source)
    assert (
        hashlib.sha256((folder / "input.txt").read_bytes()).hexdigest()
        == corpora.CORPORA["tinyshakespeare"].sha256["input.txt"]
    )
    (tmp_path / "bad.txt").write_text("not Shakespeare\n")
    with pytest.raises(DataError, match="downloaded Tiny Shakespeare input.txt has SHA-256 .* nothing was written"):
        corpora.download("tinyshakespeare", tmp_path / "other", url=(tmp_path / "bad.txt").as_uri())
    assert not (tmp_path / "other").exists()

    archive = tmp_path / "wikitext-2-v1.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("wikitext-2/wiki.train.tokens", " = A = \n a b \n")
        z.write(SHARED / "wikitext-2" / "valid.txt", "wikitext-2/wiki.valid.tokens")
        z.write(SHARED / "wikitext-2" / "test.txt", "wikitext-2/wiki.test.tokens")
    folder = corpora.download("wikitext-2", tmp_path / "data", url=archive.as_uri())
    assert sorted(p.name for p in folder.iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    prepared = corpora.prepare_corpus("word", "wikitext-2", None, tmp_path / "cache", tmp_path / "data")
    files = prepared.provenance["files"]
    assert (
        files["valid"]["verified"] and files["test"]["verified"] and files["train"]["verified"] is None
    )  # no published hash
    with pytest.raises(DataError, match=r"Downloading WikiText-2 from file:.*missing.zip failed.*corpus_path"):
        corpora.download("wikitext-2", tmp_path / "none", url=(tmp_path / "missing.zip").as_uri())


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"colour": "blue"}, r"unknown key 'colour' \(known keys: .*bptt"),
        (
            {"tie_weights": True, "hidden": 128},
            r"tie_weights needs embedding == hidden, got embedding=64 and hidden=128; set both",
        ),
        (
            {"level": "word", "corpus": "tinyshakespeare"},
            r"corpus=tinyshakespeare is a char-level corpus but level=word",
        ),
        ({"corpus": "custom"}, r"corpus=custom needs corpus_path"),
        ({"level": "word", "adaptive_softmax": True, "cutoffs": "9000,2000"}, r"cutoffs must be increasing"),
        ({"cell": "transformer"}, r"cell: Input should be 'lstm', 'gru' or 'rnn'"),
    ],
)
def test_invalid_configs_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(LMConfig, values)


def test_word_level_starts_from_the_classic_example() -> None:
    cfg = validate_config(LMConfig, {"level": "word", "hidden": "300", "embedding": "300", "tie_weights": "true"})
    assert (cfg.corpus, cfg.layers, cfg.bptt, cfg.batch_size, cfg.optimizer, cfg.lr) == (
        "wikitext-2",
        2,
        35,
        20,
        "sgd",
        20.0,
    )
    assert cfg.hidden == 300 and cfg.registered_name == "lm-word-wikitext-2"
    assert LMConfig(cell="gru").registered_name == "lm-char-tinyshakespeare-gru"
    assert LMConfig(corpus="custom", corpus_path="/x/My Poems.txt").registered_name == "lm-char-my-poems"


def test_cli_refuses_bad_keys_and_non_language_models(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["run", "lm", "--set", "hidden=0"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "hidden: Input should be greater than 0" in bad.output
    other = script_module(torch.nn.Identity(), tmp_path / "other.pt", {"family": "vae"})
    refused = runner.invoke(app, ["generate", "--model", str(other)], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "not an exported language model (family: 'vae')" in refused.output
    missing = runner.invoke(app, ["generate", "--model", str(tmp_path / "none.pt")], env={"COLUMNS": "200"})
    assert missing.exit_code == 2 and "none.pt" in missing.output
