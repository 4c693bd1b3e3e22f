"""Image data: MNIST-family IDX files -> a seeded train/val/test split, cached once as uint8 tensors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from models.common import to_device
from rlgen import settings
from rlgen.checkpoints.io import save_checkpoint
from rlgen.data.idx import (
    FILE_NAMES,
    DatasetSpec,
    dataset_spec,
    download_dataset,
    find_idx_files,
    parse_idx,
    read_bytes,
)
from rlgen.errors import DataError

CACHE_FORMAT = 1  # part of every cache key: bump it when the preparation changes so old files are not reused


TENSOR_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")


class SplitIndices(NamedTuple):
    train: np.ndarray  # sorted int64 indices into the pool
    val: np.ndarray
    test: np.ndarray


class PreparedData(NamedTuple):
    path: Path  # <cache_dir>/<dataset>-<content_hash[:16]>.pt
    content_hash: str
    provenance: dict
    sizes: dict[str, int]  # {"train": ..., "val": ..., "test": ...}
    reused: bool = False  # True when an earlier call had already written `path`


def split_indices(labels: np.ndarray, n_val: int, n_test: int, seed: int, stratify: bool = True) -> SplitIndices:
    """A seeded split of range(len(labels)) into train/val/test; stratify keeps class shares equal in each part."""
    n = len(labels)
    if n_val < 0 or n_test < 0 or n_val + n_test >= n:
        raise ValueError(f"n_val={n_val} + n_test={n_test} leaves no training items out of {n}; lower them")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if stratify:  # sort by each item's quantile within its class: every prefix then has each class's share
        label = labels[order].astype(np.int64)
        counts = np.bincount(label)
        grouped = np.argsort(label, kind="stable")  # positions in `order`, class by class, random within a class
        rank = np.empty(n, dtype=np.float64)
        rank[grouped] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        order = order[np.argsort((rank + 0.5) / counts[label], kind="stable")]
    return SplitIndices(
        train=np.sort(order[n_val + n_test :]),
        val=np.sort(order[n_test : n_test + n_val]),
        test=np.sort(order[:n_test]),
    )


def cache_key(
    dataset: str,
    file_sha256: dict[str, str],
    split_seed: int,
    val_fraction: float,
    test_fraction: float,
    stratify: bool = True,
) -> str:
    """SHA-256 of the dataset, each used file's decompressed-content SHA-256 (by role) and the split parameters."""
    published = "train_images" in file_sha256  # then test is the published test split and test_fraction is unused
    key = {
        "format": CACHE_FORMAT,
        "dataset": dataset,
        "files": dict(sorted(file_sha256.items())),
        "split": {
            "seed": int(split_seed),
            "val_fraction": float(val_fraction),
            "stratify": bool(stratify),
            "test_fraction": None if published else float(test_fraction),
        },
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def prepare(
    dataset: str,
    data_dir: Path | None,
    cache_dir: Path,
    split_seed: int,
    val_fraction: float,
    test_fraction: float,
    download: bool = True,
    stratify: bool = True,
) -> PreparedData:
    """Read (or download) the IDX files, split them with `split_seed` and write the tensors once to cache_dir."""
    spec = dataset_spec(dataset)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}={value} is outside [0, 1); pass a fraction such as 0.1")
    if split_seed < 0:
        raise ValueError(f"split_seed={split_seed} is negative; pass a seed >= 0")
    if data_dir is not None:
        source, origin = Path(data_dir).expanduser(), "data_dir"
    else:
        source, origin = settings.data_dir(), "download" if download else "rlgen_data_dir"
        if download and len(_files_or_none(source, dataset)) < len(FILE_NAMES):
            download_dataset(dataset, source)
    files = find_idx_files(source, dataset)
    published = "train_images" in files
    roles = [role for role in FILE_NAMES if role in files and (published or role.startswith("test"))]
    raw = {role: read_bytes(files[role]) for role in roles}
    arrays = {role: parse_idx(raw[role], files[role], role.split("_")[1]) for role in roles}
    _check_consistent(spec, files, arrays)
    digests = {role: hashlib.sha256(raw[role]).hexdigest() for role in roles}
    key = cache_key(dataset, digests, split_seed, val_fraction, test_fraction, stratify)

    pool = "train" if published else "test"
    n = len(arrays[f"{pool}_labels"])
    n_val, n_test = round(val_fraction * n), 0 if published else round(test_fraction * n)
    if n - n_val - n_test < 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training images "
            f"out of {n}; lower them"
        )
    idx = split_indices(arrays[f"{pool}_labels"], n_val, n_test, split_seed, stratify)
    test_part = ("test", np.arange(len(arrays["test_labels"]))) if published else (pool, idx.test)
    parts = {"train": (pool, idx.train), "val": (pool, idx.val), "test": test_part}
    sizes = {name: len(ix) for name, (_, ix) in parts.items()}
    share = f"stratified by class, seed {split_seed}" if stratify else f"seed {split_seed}"
    if published:
        rule = "published"
        description = f"published train minus a random {val_fraction:g} validation slice ({share}); published test"
    else:
        rule = "resplit_test"
        description = (
            f"only the {n}-image test split is present: random {1 - val_fraction - test_fraction:g}/"
            f"{val_fraction:g}/{test_fraction:g} train/val/test split of it ({share})"
        )
    provenance = {
        "dataset": dataset,
        "source": origin,  # data_dir (given by the user), download (torchvision) or rlgen_data_dir
        "source_dir": str(files["test_images"].parent.resolve()),
        "files": {
            role: {"path": str(files[role].resolve()), "sha256": digests[role], "items": int(arrays[role].shape[0])}
            for role in roles
        },
        "split": {
            "rule": rule,
            "description": description,
            "seed": split_seed,
            "val_fraction": float(val_fraction),
            "test_fraction": None if published else float(test_fraction),
            "stratify": stratify,
            "sizes": sizes,
        },
        "content_hash": key,
        "cache_format": CACHE_FORMAT,
    }
    path = Path(cache_dir) / f"{dataset}-{key[:16]}.pt"
    if path.is_file():
        return PreparedData(path, key, provenance, sizes, reused=True)
    payload: dict = {"provenance": provenance}
    for name, (src, ix) in parts.items():
        payload[f"{name}_images"] = torch.from_numpy(arrays[f"{src}_images"][ix]).unsqueeze(1)  # (N, 1, H, W) uint8
        payload[f"{name}_labels"] = torch.from_numpy(arrays[f"{src}_labels"][ix].astype(np.int64))  # (N,)
    save_checkpoint(path, payload)  # temporary file in cache_dir, then os.replace
    return PreparedData(path, key, provenance, sizes, reused=False)


def _files_or_none(root: Path, dataset: str) -> dict[str, Path]:
    """find_idx_files, or {} when nothing usable is there yet."""
    try:
        return find_idx_files(root, dataset)
    except DataError:
        return {}


def _check_consistent(spec: DatasetSpec, files: dict[str, Path], arrays: dict[str, np.ndarray]) -> None:
    """Images are (N, H, W) of the dataset's size, labels are in range, and each split has one label per image."""
    for split in ("train", "test"):
        if f"{split}_images" not in arrays:
            continue
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_file, label_file = files[f"{split}_images"], files[f"{split}_labels"]
        if images.shape[1:] != spec.image_size:
            raise DataError(
                f"{image_file} holds {images.shape[1]}x{images.shape[2]} images, expected "
                f"{spec.image_size[0]}x{spec.image_size[1]} for {spec.display}; is it the right dataset?"
            )
        if len(images) != len(labels):
            raise DataError(
                f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels; "
                "they must be the same split of the same dataset, download both again"
            )
        if len(labels) and int(labels.max()) >= spec.num_classes:
            raise DataError(
                f"{label_file} has label {int(labels.max())}, expected 0..{spec.num_classes - 1} for "
                f"{spec.display}; is it the right dataset?"
            )


def load_prepared(path: Path, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """The six tensors of a file written by prepare(): images uint8 (N, 1, H, W), labels int64 (N,)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"prepared data {path} does not exist; run prepare() to create it") from None
    except Exception as err:
        raise DataError(
            f"{path} is not a readable prepared-data file ({err.__class__.__name__}: {err}); "
            "delete it and run prepare() again"
        ) from None
    missing = [k for k in TENSOR_KEYS if not isinstance(payload, dict) or not isinstance(payload.get(k), Tensor)]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}; expected a file written by prepare(). Delete it and "
            "run prepare() again"
        )
    return {k: to_device(payload[k], device) for k in TENSOR_KEYS}
