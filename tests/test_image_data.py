"""Image data preparation: the IDX reader, the seeded split, the cache, the real MNIST test split, data_report."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rlgen.data.idx import find_idx_files, read_idx
from rlgen.data.images import cache_key, load_prepared, prepare, split_indices
from rlgen.data.report import data_report
from rlgen.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_RAW = SHARED_DATA / "mnist" / "raw"
MNIST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IDX_CODES = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of `array`: two zero bytes, type code, ndim, big-endian uint32 dims, big-endian data."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, IDX_CODES[dtype], array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as IDX, gzip-compressed when the name ends in .gz."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_idx_dir(folder: Path, n_test: int, n_train: int = 0, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """A folder of standard-named IDX files with random 28x28 images and labels cycling 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    arrays = {}
    for split, prefix, n in (("test", "t10k", n_test), ("train", "train", n_train)):
        if n:
            arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
            write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", arrays[f"{split}_images"])
            write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", arrays[f"{split}_labels"])
    return arrays


# ---- the IDX reader ----


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "name,array",
    [
        ("t10k-images-idx3-ubyte", np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)),
        ("t10k-labels-idx1-ubyte", np.array([7, 2, 1, 0, 4], dtype=np.uint8)),
        ("table.idx", np.arange(-6, 6, dtype=np.int32).reshape(3, 4)),
        ("floats.idx", np.linspace(-1, 1, 10, dtype=np.float32)),
    ],
)
def test_read_idx_round_trips_exactly(tmp_path: Path, name: str, array: np.ndarray, suffix: str) -> None:
    back = read_idx(write_idx(tmp_path / f"{name}{suffix}", array))
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    back[0] = 0  # a writable copy, not a view of the file's bytes


def test_read_idx_errors_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    full = idx_bytes(images)  # 16 + 7840 = 7856 bytes

    truncated = tmp_path / "t10k-images-idx3-ubyte"
    truncated.write_bytes(full[:4096])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: expected 7856 bytes for 10x28x28 images, found 4096"):
        read_idx(truncated)

    longer = tmp_path / "long.idx"
    longer.write_bytes(full + b"\x00")
    with pytest.raises(DataError, match="longer than its header says"):
        read_idx(longer)

    swapped = tmp_path / "t10k-labels-idx1-ubyte"  # an images file under a labels name
    swapped.write_bytes(full)
    with pytest.raises(DataError, match=r"bad magic number 0x00000803, expected 0x00000801 for labels"):
        read_idx(swapped)

    not_idx = tmp_path / "notes.idx"
    not_idx.write_bytes(b"hello world, not an IDX file")
    with pytest.raises(DataError, match=r"notes\.idx: bad magic number 0x68656C6C"):
        read_idx(not_idx)

    crc = bytearray(gzip.compress(full))
    crc[-8] ^= 0xFF  # the gzip trailer's CRC-32
    bad_crc = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad_crc.write_bytes(bytes(crc))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is corrupt gzip data \(CRC check failed"):
        read_idx(bad_crc)

    cut = tmp_path / "cut-images-idx3-ubyte.gz"
    cut.write_bytes(gzip.compress(full)[:40])
    with pytest.raises(DataError, match=r"cut-images-idx3-ubyte\.gz is corrupt gzip data"):
        read_idx(cut)

    with pytest.raises(DataError, match=r"IDX file .*absent-images-idx3-ubyte does not exist"):
        read_idx(tmp_path / "absent-images-idx3-ubyte")


# ---- finding files ----


def test_find_idx_files_accepts_flat_and_torchvision_layouts(tmp_path: Path) -> None:
    make_idx_dir(tmp_path / "flat", n_test=20, gz=False)
    found = find_idx_files(tmp_path / "flat", "mnist")
    assert found == {
        "test_images": tmp_path / "flat" / "t10k-images-idx3-ubyte",
        "test_labels": tmp_path / "flat" / "t10k-labels-idx1-ubyte",
    }

    make_idx_dir(tmp_path / "root" / "FashionMNIST" / "raw", n_test=20, n_train=30)
    found = find_idx_files(tmp_path / "root", "fashion-mnist")
    assert sorted(found) == ["test_images", "test_labels", "train_images", "train_labels"]
    assert found["train_images"] == tmp_path / "root" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"


def test_find_idx_files_errors(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"No MNIST IDX files found in .*empty.*t10k-images-idx3-ubyte\[\.gz\].*"
        r"--set data_dir=.*leave data_dir unset so rlgen downloads",
    ):
        find_idx_files(tmp_path / "empty", "mnist")
    with pytest.raises(ValueError, match="Unknown dataset 'cifar'; known: fashion-mnist, mnist"):
        find_idx_files(tmp_path, "cifar")
    make_idx_dir(tmp_path / "nolabels", n_test=20)
    (tmp_path / "nolabels" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz has no labels beside it"):
        find_idx_files(tmp_path / "nolabels", "mnist")


# ---- the seeded split ----


@pytest.mark.parametrize("stratify", [True, False])
def test_split_is_seeded_disjoint_and_covering(stratify: bool) -> None:
    labels = np.repeat(np.arange(10), [98, 113, 103, 101, 98, 89, 96, 103, 97, 102])  # 1000, unequal classes
    split = split_indices(labels, n_val=100, n_test=150, seed=3, stratify=stratify)
    assert (len(split.train), len(split.val), len(split.test)) == (750, 100, 150)
    everything = np.concatenate(split)
    np.testing.assert_array_equal(np.sort(everything), np.arange(1000))  # disjoint and covering
    again = split_indices(labels, n_val=100, n_test=150, seed=3, stratify=stratify)
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = split_indices(labels, n_val=100, n_test=150, seed=4, stratify=stratify)
    assert not np.array_equal(split.val, other.val) and not np.array_equal(split.test, other.test)
    if stratify:  # each class's share of the test part is within one item of its share overall
        expected = np.bincount(labels) * 150 / 1000
        assert np.all(np.abs(np.bincount(labels[split.test], minlength=10) - expected) <= 1)


def test_split_rejects_sizes_that_leave_no_training_items() -> None:
    with pytest.raises(ValueError, match="n_val=60 \\+ n_test=40 leaves no training items out of 100"):
        split_indices(np.zeros(100, dtype=np.uint8), 60, 40, seed=0)


# ---- prepare() and its cache ----


def test_prepare_writes_the_cache_once_and_reuses_it(tmp_path: Path) -> None:
    source = make_idx_dir(tmp_path / "idx", n_test=100)
    cache = tmp_path / "cache"
    first = prepare("mnist", tmp_path / "idx", cache, split_seed=5, val_fraction=0.1, test_fraction=0.2)
    assert not first.reused and first.sizes == {"train": 70, "val": 10, "test": 20}
    assert first.path == cache / f"mnist-{first.content_hash[:16]}.pt" and first.path.is_file()
    stamp = first.path.stat()

    second = prepare("mnist", tmp_path / "idx", cache, split_seed=5, val_fraction=0.1, test_fraction=0.2)
    assert second.reused and second.path == first.path and second.content_hash == first.content_hash
    assert (first.path.stat().st_mtime_ns, first.path.stat().st_ino) == (stamp.st_mtime_ns, stamp.st_ino)
    assert sorted(os.listdir(cache)) == [first.path.name]  # no temporary files left

    prov = first.provenance
    assert prov == second.provenance
    assert prov["split"] | {"description": ""} == {
        "rule": "resplit_test",
        "description": "",
        "seed": 5,
        "val_fraction": 0.1,
        "test_fraction": 0.2,
        "stratify": True,
        "sizes": {"train": 70, "val": 10, "test": 20},
    }
    assert sorted(prov["files"]) == ["test_images", "test_labels"]
    images_file = tmp_path / "idx" / "t10k-images-idx3-ubyte.gz"
    content_sha256 = hashlib.sha256(gzip.decompress(images_file.read_bytes())).hexdigest()
    assert prov["files"]["test_images"] == {"path": str(images_file.resolve()), "items": 100, "sha256": content_sha256}
    assert (
        prov["content_hash"]
        == first.content_hash
        == cache_key("mnist", {r: f["sha256"] for r, f in prov["files"].items()}, 5, 0.1, 0.2)
    )

    data = load_prepared(first.path, "cpu")
    expected = split_indices(source["test_labels"], 10, 20, seed=5)
    for part in ("train", "val", "test"):
        assert data[f"{part}_images"].dtype == torch.uint8 and data[f"{part}_labels"].dtype == torch.int64
        ix = getattr(expected, part)
        torch.testing.assert_close(
            data[f"{part}_images"], torch.from_numpy(source["test_images"][ix]).unsqueeze(1), rtol=0, atol=0
        )
        torch.testing.assert_close(
            data[f"{part}_labels"], torch.from_numpy(source["test_labels"][ix]).long(), rtol=0, atol=0
        )
    assert torch.load(first.path, weights_only=True)["provenance"] == prov

    other = prepare("mnist", tmp_path / "idx", cache, split_seed=6, val_fraction=0.1, test_fraction=0.2)
    assert not other.reused and other.path != first.path


def test_prepare_keeps_the_published_split_when_train_images_exist(tmp_path: Path) -> None:
    source = make_idx_dir(tmp_path / "idx", n_test=20, n_train=50, gz=False)
    prepared = prepare("fashion-mnist", tmp_path / "idx", tmp_path / "cache", 0, val_fraction=0.1, test_fraction=0.5)
    assert prepared.sizes == {"train": 45, "val": 5, "test": 20}
    assert prepared.provenance["split"]["rule"] == "published"
    assert prepared.provenance["split"]["test_fraction"] is None  # unused, and not part of the cache key
    data = load_prepared(prepared.path, "cpu")
    torch.testing.assert_close(data["test_images"][:, 0], torch.from_numpy(source["test_images"]), rtol=0, atol=0)
    again = prepare("fashion-mnist", tmp_path / "idx", tmp_path / "cache", 0, val_fraction=0.1, test_fraction=0.2)
    assert again.reused


def test_a_failing_prepare_leaves_no_cache_file(tmp_path: Path) -> None:
    make_idx_dir(tmp_path / "idx", n_test=100)
    cache = tmp_path / "cache"
    cache.mkdir()
    images = tmp_path / "idx" / "t10k-images-idx3-ubyte.gz"
    good = images.read_bytes()
    images.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt gzip data"):
        prepare("mnist", tmp_path / "idx", cache, 0, 0.1, 0.1)
    assert os.listdir(cache) == []

    write_idx(tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz", np.zeros(99, dtype=np.uint8))
    images.write_bytes(good)
    with pytest.raises(
        DataError,
        match=r"t10k-images-idx3-ubyte\.gz has 100 images but .*t10k-labels-idx1-ubyte\.gz "
        r"has 99 labels",
    ):
        prepare("mnist", tmp_path / "idx", cache, 0, 0.1, 0.1)
    assert os.listdir(cache) == []


def test_prepare_reads_the_rlgen_data_dir_without_downloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLGEN_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"No MNIST IDX files found in .*data"):
        prepare("mnist", None, tmp_path / "cache", 0, 0.1, 0.1, download=False)
    make_idx_dir(tmp_path / "data" / "MNIST" / "raw", n_test=30)
    prepared = prepare("mnist", None, tmp_path / "cache", 0, 0.1, 0.1, download=False)
    assert prepared.sizes == {"train": 24, "val": 3, "test": 3}
    assert prepared.provenance["source"] == "rlgen_data_dir"


def test_bad_arguments_and_unreadable_cache_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"val_fraction=1\.5 is outside \[0, 1\)"):
        prepare("mnist", tmp_path, tmp_path, 0, 1.5, 0.1)
    with pytest.raises(ValueError, match="Unknown dataset 'mnsit'"):
        prepare("mnsit", tmp_path, tmp_path, 0, 0.1, 0.1)
    with pytest.raises(DataError, match=r"prepared data .*missing\.pt does not exist; run prepare\(\)"):
        load_prepared(tmp_path / "missing.pt", "cpu")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"junk\.pt is not a readable prepared-data file"):
        load_prepared(tmp_path / "junk.pt", "cpu")


# ---- the real MNIST test split (offline copy beside the repo) ----


@pytest.fixture(scope="module")
def mnist_raw() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see its README.md on the shared volume)")
    return MNIST_RAW


def test_real_mnist_test_split_is_read_and_resplit(mnist_raw: Path, tmp_path: Path) -> None:
    labels = read_idx(mnist_raw / "t10k-labels-idx1-ubyte.gz")
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).tolist() == MNIST_CLASS_COUNTS
    decompressed = gzip.decompress((mnist_raw / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert hashlib.md5(decompressed).hexdigest() == "2646ac647ad5339dbf082846283269ea"

    prepared = prepare("mnist", mnist_raw, tmp_path, split_seed=1, val_fraction=0.1, test_fraction=0.1)
    assert prepared.sizes == {"train": 8000, "val": 1000, "test": 1000}
    assert sorted(prepared.provenance["files"]) == ["test_images", "test_labels"]  # train labels alone are unused
    assert prepared.provenance["files"]["test_images"]["sha256"] == hashlib.sha256(decompressed).hexdigest()
    data = load_prepared(prepared.path, "cpu")
    assert data["train_images"].shape == (8000, 1, 28, 28) and data["val_images"].shape == (1000, 1, 28, 28)
    all_labels = torch.cat([data["train_labels"], data["val_labels"], data["test_labels"]])
    assert torch.bincount(all_labels).tolist() == MNIST_CLASS_COUNTS


# ---- data_report ----


def test_data_report_kurtosis_is_gaussian_for_noise(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    noise = (128 + 30 * torch.randn(512, 1, 28, 28, generator=gen)).round().clamp(0, 255).to(torch.uint8)
    metrics = data_report(noise, tmp_path / "noise.png", "Gaussian noise")
    assert (tmp_path / "noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(metrics) == {
        "data/pixel_mean",
        "data/pixel_std",
        "data/kurtosis_scale1",
        "data/kurtosis_scale2",
        "data/kurtosis_scale4",
    }
    assert metrics["data/pixel_mean"] == pytest.approx(128 / 255, abs=0.01)
    assert metrics["data/pixel_std"] == pytest.approx(30 / 255, abs=0.01)
    for scale in (1, 2, 4):
        assert metrics[f"data/kurtosis_scale{scale}"] == pytest.approx(3.0, abs=0.25)


def test_data_report_kurtosis_is_heavy_tailed_for_digits(mnist_raw: Path, tmp_path: Path) -> None:
    digits = torch.from_numpy(read_idx(mnist_raw / "t10k-images-idx3-ubyte.gz")[:1000]).unsqueeze(1)
    metrics = data_report(digits, tmp_path / "digits.png", "MNIST digits")
    assert (tmp_path / "digits.png").stat().st_size > 10_000
    assert metrics["data/kurtosis_scale1"] > 6
    assert metrics["data/kurtosis_scale2"] > 4.5
    assert metrics["data/kurtosis_scale4"] > 3.5


def test_data_report_rejects_float_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expects uint8 images \(N, 1, H, W\).*got torch.float32 \(4, 28, 28\)"):
        data_report(torch.zeros(4, 28, 28), tmp_path / "x.png", "bad")
