"""IDX files (the MNIST family's format): read and check them, find them in a folder, download them."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rlgen import settings
from rlgen.errors import DataError, DownloadError

FILE_NAMES = {  # role -> standard IDX file name (also accepted with .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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


def dataset_spec(dataset: str) -> DatasetSpec:
    """The spec of a known dataset name; an unknown one lists the valid names."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset]


def read_idx(path: Path, kind: str | None = None) -> np.ndarray:
    """An IDX file (raw or gzip) as a native-endian array; kind "images"/"labels" (else from the name) sets the
    magic."""
    if kind not in (None, *IDX_MAGIC):
        raise ValueError(f"kind={kind!r} is not an IDX kind; use 'images', 'labels' or None")
    path = Path(path)
    kind = kind or ("images" if "-images-" in path.name else "labels" if "-labels-" in path.name else None)
    array = parse_idx(read_bytes(path), path, kind)
    return array.astype(array.dtype.newbyteorder("="))


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"IDX file {path} does not exist; check the path, or leave data_dir unset so rlgen downloads the dataset"
        ) from None
    except OSError as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile (CRC, header) is an OSError; truncation an EOFError
        raise DataError(
            f"{path} is corrupt gzip data ({err}); expected a complete gzip-compressed IDX file. "
            "Delete it and download it again"
        ) from None


def parse_idx(data: bytes, path: Path, kind: str | None) -> np.ndarray:
    """A read-only array over IDX bytes, after checking the magic number and that the size matches the dims."""
    if len(data) < 4:
        raise DataError(f"{path}: expected at least a 4-byte IDX header, found {len(data)} bytes; download it again")
    magic, code, ndim = int.from_bytes(data[:4], "big"), data[2], data[3]
    if kind is not None and magic != IDX_MAGIC[kind]:
        raise DataError(
            f"{path}: bad magic number 0x{magic:08X}, expected 0x{IDX_MAGIC[kind]:08X} for {kind}; "
            "is this the right file? Download it again if so"
        )
    if data[0] or data[1] or code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad magic number 0x{magic:08X}, expected 0x0000TTNN (TT a type code in "
            "08 09 0B 0C 0D 0E, NN >= 1 dims); this is not an IDX file"
        )
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        what = "x".join(map(str, dims)) + " " + (kind or f"{dtype.name} values")
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{path}: expected {expected} bytes for {what}, found {len(data)} ({problem}); download it again"
        )
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
        raise DataError(
            f"No {spec.display} IDX files found in {where}; looked for {names} (the train pair is "
            f"optional). Put them in a folder and pass --set data_dir=<folder>, or leave data_dir unset "
            f"so rlgen downloads {spec.display} into {settings.data_dir()}"
        )
    for split in ("train", "test"):
        if f"{split}_images" in found and f"{split}_labels" not in found:
            raise DataError(
                f"{found[f'{split}_images']} has no labels beside it; expected "
                f"{folder / FILE_NAMES[f'{split}_labels']}[.gz]; add the labels file"
            )
    if "test_images" not in found:
        raise DataError(
            f"{folder} has the train split but not the test split; expected "
            f"{folder / FILE_NAMES['test_images']}[.gz] and {FILE_NAMES['test_labels']}[.gz] there"
        )
    return found


def download_dataset(dataset: str, root: Path) -> Path:
    """Fetch all four IDX files with torchvision (MD5 checked) into <root>/<Folder>/raw and return that folder."""
    import torchvision.datasets  # deferred: slow to import, and only needed when downloading

    spec = dataset_spec(dataset)
    try:
        getattr(torchvision.datasets, spec.folder)(str(root), train=False, download=True)
    except (RuntimeError, OSError) as err:
        raise DownloadError(
            f"Downloading {spec.display} into {root / spec.folder / 'raw'} failed: {str(err).strip()}. "
            "Check the network, or pass --set data_dir=<folder with the IDX files> to work offline"
        ) from None
    return root / spec.folder / "raw"
