"""Text corpora for the language models: download or read, verify, split, build the vocabulary, cache token ids.

Tiny Shakespeare is one file with no official split: the customary split is the first 90% of its characters
for training and the last 10% for validation (nanoGPT, char-rnn). WikiText-2 comes as train/valid/test files
that are already tokenized, with rare words replaced by `<unk>`; each line ends with `<eos>` as in PyTorch's
word_language_model. The vocabulary covers every split (WikiText's vocabulary is closed: every token of
every split is in it), sorted by frequency so that an adaptive softmax can cluster it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from models.common import to_device
from rlgen.checkpoints.io import save_checkpoint
from rlgen.data.vocabulary import Vocabulary, tokenize
from rlgen.errors import DataError, DownloadError

CACHE_FORMAT = 1  # part of every cache key: bump it when tokenization or splitting changes


ROLES = ("train", "valid", "test")


class CorpusSpec(NamedTuple):
    level: str
    url: str
    sha256: dict[str, str | None]  # file name -> published SHA-256 (None: none known to rlgen)
    display: str


CORPORA = {
    "tinyshakespeare": CorpusSpec(
        "char",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        {"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
        "Tiny Shakespeare",
    ),
    # The zip's own hash is not published, and rlgen has not yet seen its train split: valid and test are
    # checked against the hashes of the canonical files; train.txt's hash is recorded in the run, unverified.
    "wikitext-2": CorpusSpec(
        "word",
        "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
        {
            "train.txt": None,
            "valid.txt": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            "test.txt": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        },
        "WikiText-2",
    ),
}


class PreparedCorpus(NamedTuple):
    path: Path  # <cache_dir>/<corpus>-<level>-<content_hash[:16]>.pt: train/valid/test token ids (N,) int64
    vocab_path: Path  # the vocabulary as JSON, shared by every split rule of the same files
    content_hash: str
    provenance: dict
    sizes: dict[str, int]  # tokens per split
    vocab_size: int
    reused: bool = False


def find_files(path: Path) -> dict[str, Path]:
    """{"single": file} for a file, else the train/valid/test files of a folder ({role}.txt or wiki.{role}.tokens)."""
    path = Path(path).expanduser()
    if path.is_file():
        return {"single": path}
    if not path.is_dir():
        raise DataError(f"corpus_path {path} does not exist; pass a text file or a folder of train/valid/test files")
    found = {role: f for role in ROLES for f in (path / f"{role}.txt", path / f"wiki.{role}.tokens") if f.is_file()}
    if not found and (path / "input.txt").is_file():
        return {"single": path / "input.txt"}
    if not found or set(found) == {"test"} or set(found) == {"train", "test"}:
        have = ", ".join(f.name for f in found.values()) or "none of them"
        raise DataError(
            f"{path} holds no usable split: looked for train.txt, valid.txt, test.txt (or wiki.<split>.tokens) "
            f"and input.txt, found {have}; a folder needs valid plus train or test, or pass one text file"
        )
    return found


def read_text(path: Path) -> tuple[str, str]:
    """(text, SHA-256 of the bytes) of a UTF-8 file; a missing, empty or non-UTF-8 file is a DataError."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read corpus file {path}: {err}") from None
    if not data.strip():
        raise DataError(f"corpus file {path} is empty; expected UTF-8 text")
    try:
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError as err:
        raise DataError(f"corpus file {path} is not UTF-8 text ({err}); convert it or pass another file") from None


def verify(corpus: str, files: dict[str, Path], digests: dict[str, str]) -> dict[str, bool | None]:
    """Check each file of a published corpus against its SHA-256 (None: no published hash); a mismatch is a
    DataError."""
    published = CORPORA[corpus].sha256 if corpus in CORPORA else {}
    result: dict[str, bool | None] = {}
    for role, file in files.items():
        name = "input.txt" if role == "single" else f"{role}.txt"
        expected = published.get(name)
        if corpus in CORPORA and name not in published:
            raise DataError(
                f"{file} is not a file of {CORPORA[corpus].display} (expected {', '.join(published)}); "
                "pass --set corpus=custom to train on your own text"
            )
        if expected is not None and digests[role] != expected:
            raise DataError(
                f"{file} has SHA-256 {digests[role]}, expected {expected} for {CORPORA[corpus].display}'s {name}: "
                "the file is corrupt or a different text. Download it again, or pass --set corpus=custom "
                "to train on it as your own text"
            )
        result[role] = None if expected is None else True
    return result


def download(corpus: str, root: Path, url: str | None = None) -> Path:
    """Fetch a published corpus into <root>/<corpus>/ (SHA-256 checked) unless it is already there; returns the
    folder."""
    spec = CORPORA[corpus]
    folder = Path(root) / corpus
    wanted = [name for name, sha in spec.sha256.items() if sha is not None]
    if all((folder / name).is_file() for name in wanted):
        return folder
    try:
        with urllib.request.urlopen(url or spec.url, timeout=60) as response:
            payload = response.read()
    except OSError as err:
        raise DownloadError(
            f"Downloading {spec.display} from {url or spec.url} failed ({err}); check the network, or pass "
            f"--set corpus_path=<file or folder> to read a local copy"
        ) from None
    if spec.level == "char":
        contents = {"input.txt": payload}
    else:
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                members = {Path(n).name: n for n in archive.namelist()}
                contents = {f"{role}.txt": archive.read(members[f"wiki.{role}.tokens"]) for role in ROLES}
        except (zipfile.BadZipFile, KeyError) as err:
            raise DownloadError(
                f"{url or spec.url} is not the WikiText-2 zip ({err}); expected wiki.{{train,valid,test}}.tokens"
            ) from None
    for name, data in contents.items():
        expected, got = spec.sha256.get(name), hashlib.sha256(data).hexdigest()
        if expected is not None and got != expected:
            raise DownloadError(
                f"the downloaded {spec.display} {name} has SHA-256 {got}, expected {expected}; nothing was "
                "written. Try again later, or pass --set corpus_path=<a verified local copy>"
            )
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / name)
    return folder


def split_texts(texts: dict[str, str], level: str, val_fraction: float) -> tuple[dict[str, str], str, str]:
    """(train/valid/test texts, rule, description) from the files that are present."""
    if "single" in texts or set(texts) == {"train"}:
        text = texts.get("single", texts.get("train", ""))
        if level == "char":
            cut = int(len(text) * (1 - val_fraction))
            train, valid = f"{1 - val_fraction:.0%}", f"{val_fraction:.0%}"
            where = f"the first {train} of its characters ({cut:,}) train, the last {valid} validation"
        else:
            lines = text.split("\n")
            cut = len("\n".join(lines[: int(len(lines) * (1 - val_fraction))])) + 1
            where = f"the first {1 - val_fraction:.0%} of its lines train, the last {val_fraction:.0%} validation"
        return (
            {"train": text[:cut], "valid": text[cut:], "test": text[cut:]},
            "single_file",
            f"one file: {where}; no test split, so test metrics are the validation split's",
        )
    if set(texts) == {"train", "valid", "test"}:
        return dict(texts), "published", "the published train, valid and test files"
    if set(texts) == {"train", "valid"}:
        return {**texts, "test": texts["valid"]}, "no_test", "published train and valid; no test file, so test = valid"
    lines = texts["test"].split("\n")
    half = "\n".join(lines[: len(lines) // 2]) + "\n"
    return (
        {"train": texts["valid"], "valid": half, "test": texts["test"][len(half) :]},
        "valid_test_only",
        "no train file: train on valid, validate on the first half of test's lines, test on the second half",
    )


def prepare_corpus(
    level: str, corpus: str, corpus_path: Path | None, cache_dir: Path, root: Path, val_fraction: float = 0.1
) -> PreparedCorpus:
    """Read (or download) and verify the corpus, split it, and cache its vocabulary and token ids by content hash."""
    source = Path(corpus_path).expanduser() if corpus_path is not None else download(corpus, root)
    files = find_files(source)
    read = {role: read_text(path) for role, path in files.items()}
    digests = {role: sha for role, (_, sha) in read.items()}
    verified = verify(corpus, files, digests)
    vocab_key = hashlib.sha256(
        json.dumps({"format": CACHE_FORMAT, "level": level, "files": sorted(digests.values())}).encode()
    ).hexdigest()
    texts, rule, description = split_texts({role: text for role, (text, _) in read.items()}, level, val_fraction)
    key = hashlib.sha256(
        json.dumps(
            {"vocab": vocab_key, "rule": rule, "val_fraction": val_fraction if rule == "single_file" else None}
        ).encode()
    ).hexdigest()
    cache_dir = Path(cache_dir)
    path, vocab_path = (
        cache_dir / f"{corpus}-{level}-{key[:16]}.pt",
        cache_dir / f"{corpus}-{level}-{vocab_key[:16]}.vocab.json",
    )
    streams = {role: tokenize(text, level) for role, text in texts.items()}
    if vocab_path.is_file():
        vocab = Vocabulary.from_json(json.loads(vocab_path.read_text()))
    else:
        vocab = Vocabulary.build((tokenize(text, level) for text, _ in read.values()), level)
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".vocab.")
        with os.fdopen(fd, "w") as f:
            json.dump(vocab.to_json(), f)
        os.replace(tmp, vocab_path)
    sizes = {role: len(stream) for role, stream in streams.items()}
    for role, size in sizes.items():
        if size < 2:
            raise DataError(f"the {role} split of {source} has {size} tokens ({description}); expected at least 2")
    provenance = {
        "corpus": corpus,
        "level": level,
        "source": "corpus_path" if corpus_path is not None else "download",
        "source_path": str(source.resolve()),
        "files": {
            role: {"path": str(files[role].resolve()), "sha256": digests[role], "verified": verified[role]}
            for role in files
        },
        "split": {
            "rule": rule,
            "description": description,
            "val_fraction": val_fraction if rule == "single_file" else None,
            "sizes": sizes,
        },
        "vocab_size": len(vocab),
        "content_hash": key,
        "cache_format": CACHE_FORMAT,
    }
    if path.is_file():
        return PreparedCorpus(path, vocab_path, key, provenance, sizes, len(vocab), reused=True)
    payload = {
        role: torch.tensor(vocab.encode(stream), dtype=torch.long) for role, stream in streams.items()
    }  # (N,) each
    save_checkpoint(path, {**payload, "provenance": provenance})
    return PreparedCorpus(path, vocab_path, key, provenance, sizes, len(vocab), reused=False)


def load_corpus(path: Path, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """The train/valid/test token ids (N,) int64 of a file written by prepare_corpus, on `device`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"prepared corpus {path} does not exist; run prepare_corpus() to create it") from None
    except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise DataError(
            f"{path} is not a readable prepared corpus ({err.__class__.__name__}: {err}); delete it and prepare again"
        ) from None
    if not isinstance(payload, dict) or not all(isinstance(payload.get(r), Tensor) for r in ROLES):
        raise DataError(f"{path} lacks the train/valid/test token tensors; delete it and prepare again")
    return {role: to_device(payload[role], device) for role in ROLES}


def load_vocabulary(path: Path) -> Vocabulary:
    """The vocabulary JSON written by prepare_corpus."""
    try:
        return Vocabulary.from_json(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, ValueError) as err:
        raise DataError(f"{path} is not a readable vocabulary ({err}); delete it and prepare again") from None
