"""Image data: MNIST-family IDX files -> a seeded train/val/test split, cached once as uint8 tensors."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import zlib
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from models.common import to_device  # noqa: E402
from rlgen import settings  # noqa: E402
from tasks.checkpoint import save_checkpoint  # noqa: E402

CACHE_FORMAT = 1  # part of every cache key: bump it when the preparation changes so old files are not reused
FILE_NAMES = {  # role -> standard IDX file name (also accepted with .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TENSOR_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned bytes; 3 dims (N, H, W) or 1 dim (N,)


class DatasetSpec(NamedTuple):
    folder: str  # the torchvision.datasets class, and the folder it downloads into: <root>/<folder>/raw
    display: str
    num_classes: int
    image_size: tuple[int, int]


DATASETS = {
    "mnist": DatasetSpec("MNIST", "MNIST", 10, (28, 28)),
    "fashion-mnist": DatasetSpec("FashionMNIST", "Fashion-MNIST", 10, (28, 28)),
}


class DataError(ValueError):
    """A data file is missing, truncated or corrupt, or files disagree; the message names the file and the fix."""


class DownloadError(DataError):
    """Fetching a dataset over the network failed: the one data error that a retry may cure."""


def retry_only_downloads(task: object, task_run: object, state: object) -> bool:
    """Prefect retry condition of the data tasks: retry a failed download, never bad local data or a bad config."""
    error = getattr(state, "data", None)
    return isinstance(error, DownloadError) or not isinstance(error, ValueError)


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


def dataset_spec(dataset: str) -> DatasetSpec:
    """The spec of a known dataset name; an unknown one lists the valid names."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset]


def read_idx(path: Path, kind: str | None = None) -> np.ndarray:
    """An IDX file (raw or gzip) as a native-endian array; kind "images"/"labels" (else from the name) sets the magic."""
    if kind not in (None, *IDX_MAGIC):
        raise ValueError(f"kind={kind!r} is not an IDX kind; use 'images', 'labels' or None")
    path = Path(path)
    kind = kind or ("images" if "-images-" in path.name else "labels" if "-labels-" in path.name else None)
    array = _parse_idx(_read_bytes(path), path, kind)
    return array.astype(array.dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist; check the path, or leave data_dir unset so rlgen "
                        "downloads the dataset") from None
    except OSError as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile (CRC, header) is an OSError; truncation an EOFError
        raise DataError(f"{path} is corrupt gzip data ({err}); expected a complete gzip-compressed IDX file. "
                        "Delete it and download it again") from None


def _parse_idx(data: bytes, path: Path, kind: str | None) -> np.ndarray:
    """A read-only array over IDX bytes, after checking the magic number and that the size matches the dims."""
    if len(data) < 4:
        raise DataError(f"{path}: expected at least a 4-byte IDX header, found {len(data)} bytes; download it again")
    magic, code, ndim = int.from_bytes(data[:4], "big"), data[2], data[3]
    if kind is not None and magic != IDX_MAGIC[kind]:
        raise DataError(f"{path}: bad magic number 0x{magic:08X}, expected 0x{IDX_MAGIC[kind]:08X} for {kind}; "
                        "is this the right file? Download it again if so")
    if data[0] or data[1] or code not in IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: bad magic number 0x{magic:08X}, expected 0x0000TTNN (TT a type code in "
                        "08 09 0B 0C 0D 0E, NN >= 1 dims); this is not an IDX file")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        what = "x".join(map(str, dims)) + " " + (kind or f"{dtype.name} values")
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path}: expected {expected} bytes for {what}, found {len(data)} ({problem}); "
                        "download it again")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def find_idx_files(data_dir: Path, dataset: str) -> dict[str, Path]:
    """The standard IDX files in data_dir, <data_dir>/<Folder>/raw or <data_dir>/raw, keyed by role (test required)."""
    spec = dataset_spec(dataset)
    data_dir = Path(data_dir).expanduser()
    candidates = [data_dir, data_dir / spec.folder / "raw", data_dir / "raw"]
    for folder in candidates:
        found = {}
        for role, name in FILE_NAMES.items():
            file = next((f for f in (folder / name, folder / f"{name}.gz") if f.is_file()), None)  # raw before .gz
            if file is not None:
                found[role] = file
        if "test_images" in found or "train_images" in found:
            break
    else:
        names = ", ".join(f"{name}[.gz]" for name in FILE_NAMES.values())
        where = ", ".join(str(c) for c in candidates) + ("" if data_dir.is_dir() else f" ({data_dir} does not exist)")
        raise DataError(f"No {spec.display} IDX files found in {where}; looked for {names} (the train pair is "
                        f"optional). Put them in a folder and pass --set data_dir=<folder>, or leave data_dir unset "
                        f"so rlgen downloads {spec.display} into {settings.data_dir()}")
    for split in ("train", "test"):
        if f"{split}_images" in found and f"{split}_labels" not in found:
            raise DataError(f"{found[f'{split}_images']} has no labels beside it; expected "
                            f"{folder / FILE_NAMES[f'{split}_labels']}[.gz]; add the labels file")
    if "test_images" not in found:
        raise DataError(f"{folder} has the train split but not the test split; expected "
                        f"{folder / FILE_NAMES['test_images']}[.gz] and {FILE_NAMES['test_labels']}[.gz] there")
    return found


def download_dataset(dataset: str, root: Path) -> Path:
    """Fetch all four IDX files with torchvision (MD5 checked) into <root>/<Folder>/raw and return that folder."""
    import torchvision.datasets  # deferred: slow to import, and only needed when downloading

    spec = dataset_spec(dataset)
    try:
        getattr(torchvision.datasets, spec.folder)(str(root), train=False, download=True)
    except (RuntimeError, OSError) as err:
        raise DownloadError(f"Downloading {spec.display} into {root / spec.folder / 'raw'} failed: {str(err).strip()}. "
                        "Check the network, or pass --set data_dir=<folder with the IDX files> to work offline") from None
    return root / spec.folder / "raw"


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
    return SplitIndices(train=np.sort(order[n_val + n_test:]), val=np.sort(order[n_test:n_test + n_val]),
                        test=np.sort(order[:n_test]))


def cache_key(dataset: str, file_sha256: dict[str, str], split_seed: int, val_fraction: float,
              test_fraction: float, stratify: bool = True) -> str:
    """SHA-256 of the dataset, each used file's decompressed-content SHA-256 (by role) and the split parameters."""
    published = "train_images" in file_sha256  # then test is the published test split and test_fraction is unused
    key = {"format": CACHE_FORMAT, "dataset": dataset, "files": dict(sorted(file_sha256.items())),
           "split": {"seed": int(split_seed), "val_fraction": float(val_fraction), "stratify": bool(stratify),
                     "test_fraction": None if published else float(test_fraction)}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def prepare(dataset: str, data_dir: Path | None, cache_dir: Path, split_seed: int, val_fraction: float,
            test_fraction: float, download: bool = True, stratify: bool = True) -> PreparedData:
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
    raw = {role: _read_bytes(files[role]) for role in roles}
    arrays = {role: _parse_idx(raw[role], files[role], role.split("_")[1]) for role in roles}
    _check_consistent(spec, files, arrays)
    digests = {role: hashlib.sha256(raw[role]).hexdigest() for role in roles}
    key = cache_key(dataset, digests, split_seed, val_fraction, test_fraction, stratify)

    pool = "train" if published else "test"
    n = len(arrays[f"{pool}_labels"])
    n_val, n_test = round(val_fraction * n), 0 if published else round(test_fraction * n)
    if n - n_val - n_test < 1:
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training images "
                         f"out of {n}; lower them")
    idx = split_indices(arrays[f"{pool}_labels"], n_val, n_test, split_seed, stratify)
    test_part = ("test", np.arange(len(arrays["test_labels"]))) if published else (pool, idx.test)
    parts = {"train": (pool, idx.train), "val": (pool, idx.val), "test": test_part}
    sizes = {name: len(ix) for name, (_, ix) in parts.items()}
    share = f"stratified by class, seed {split_seed}" if stratify else f"seed {split_seed}"
    if published:
        rule = "published"
        description = (f"published train minus a random {val_fraction:g} validation slice ({share}); "
                       "published test")
    else:
        rule = "resplit_test"
        description = (f"only the {n}-image test split is present: random {1 - val_fraction - test_fraction:g}/"
                       f"{val_fraction:g}/{test_fraction:g} train/val/test split of it ({share})")
    provenance = {
        "dataset": dataset,
        "source": origin,  # data_dir (given by the user), download (torchvision) or rlgen_data_dir
        "source_dir": str(files["test_images"].parent.resolve()),
        "files": {role: {"path": str(files[role].resolve()), "sha256": digests[role],
                         "items": int(arrays[role].shape[0])} for role in roles},
        "split": {"rule": rule, "description": description, "seed": split_seed, "val_fraction": float(val_fraction),
                  "test_fraction": None if published else float(test_fraction), "stratify": stratify,
                  "sizes": sizes},
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
            raise DataError(f"{image_file} holds {images.shape[1]}x{images.shape[2]} images, expected "
                            f"{spec.image_size[0]}x{spec.image_size[1]} for {spec.display}; is it the right dataset?")
        if len(images) != len(labels):
            raise DataError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels; "
                            "they must be the same split of the same dataset, download both again")
        if len(labels) and int(labels.max()) >= spec.num_classes:
            raise DataError(f"{label_file} has label {int(labels.max())}, expected 0..{spec.num_classes - 1} for "
                            f"{spec.display}; is it the right dataset?")


def load_prepared(path: Path, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """The six tensors of a file written by prepare(): images uint8 (N, 1, H, W), labels int64 (N,)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"prepared data {path} does not exist; run prepare() to create it") from None
    except Exception as err:
        raise DataError(f"{path} is not a readable prepared-data file ({err.__class__.__name__}: {err}); "
                        "delete it and run prepare() again") from None
    missing = [k for k in TENSOR_KEYS if not isinstance(payload, dict) or not isinstance(payload.get(k), Tensor)]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; expected a file written by prepare(). Delete it and "
                        "run prepare() again")
    return {k: to_device(payload[k], device) for k in TENSOR_KEYS}


def kurtosis(values: Tensor) -> float:
    """The fourth standardized moment E[(v - mean)^4] / var^2 (3 for a Gaussian); nan when var is 0."""
    centred = values.double() - values.double().mean()
    var = centred.pow(2).mean()
    return (centred.pow(4).mean() / var.pow(2)).item() if var > 0 else float("nan")


def data_report(images: Tensor, path: Path, title: str) -> dict[str, float]:
    """Pixel and horizontal-gradient statistics of uint8 images (N, 1, H, W) at 3 scales, histograms saved to `path`."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 1 or images.shape[0] == 0 \
            or min(images.shape[2:]) < 8:
        raise ValueError(f"data_report expects uint8 images (N, 1, H, W) with N >= 1 and H, W >= 8, got "
                         f"{images.dtype} {tuple(images.shape)}; pass prepared images, e.g. data['train_images']")
    x = images.detach().cpu().double() / 255.0  # (N, 1, H, W) in [0, 1]
    metrics = {"data/pixel_mean": x.mean().item(), "data/pixel_std": x.std(correction=0).item()}
    responses = {}
    for scale in (1, 2, 4):
        pooled = F.avg_pool2d(x, scale) if scale > 1 else x  # (N, 1, H/s, W/s)
        responses[scale] = (pooled[:, :, :, 1:] - pooled[:, :, :, :-1]).flatten()
        metrics[f"data/kurtosis_scale{scale}"] = kurtosis(responses[scale])

    fig, (ax_pixels, ax_grad) = plt.subplots(1, 2, figsize=(11, 4))
    counts = torch.bincount(images.detach().cpu().flatten().long(), minlength=256).numpy()
    ax_pixels.stairs(counts, np.arange(257), fill=True, color="#4c72b0")
    ax_pixels.set(yscale="log", xlabel="pixel intensity (0-255)", ylabel="pixels",
                  title=f"pixels: mean {metrics['data/pixel_mean']:.3f}, std {metrics['data/pixel_std']:.3f}")
    edges = np.linspace(-1.0, 1.0, 121)
    for scale, g in responses.items():
        density, _ = np.histogram(g.numpy(), bins=edges, density=True)
        label = f"{scale}x{scale} pooled" if scale > 1 else "full resolution"
        ax_grad.stairs(density, edges, label=f"{label} (kurtosis {metrics[f'data/kurtosis_scale{scale}']:.1f})")
    sd = responses[1].std().item()
    if sd > 0:
        centres = (edges[:-1] + edges[1:]) / 2
        gauss = np.exp(-0.5 * (centres / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        ax_grad.plot(centres, gauss, "k--", linewidth=1, label="Gaussian, same variance as full resolution")
    ax_grad.set(yscale="log", xlabel="horizontal gradient x[..., 1:] - x[..., :-1] (pixels in [0, 1])",
                ylabel="density", title="gradient filter responses")
    ax_grad.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return metrics
