"""helper_utils.data: verified, atomic fetch (on tiny synthetic archives), ClothingDataset, caches, loaders."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import urllib.error
import warnings
import zipfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

import helper_utils.data as data
from helper_utils.data import (
    CLASSES_7,
    CLASSES_10,
    ClothingDataset,
    DatasetNotFoundError,
    FetchError,
    fetch,
    main,
    make_loader,
)

REPO = Path(__file__).resolve().parents[1]
REAL_SHARED_ARCHIVE = data._shared_archive
SHARED_ARCHIVE = REPO.parent / "shared" / "datasets" / data.SHARED_ARCHIVE_NAME

# A stand-in for EXPECTED_COUNTS: 2 classes, 8 photos in all.
TINY_COUNTS = {
    "train": {"dress": 2, "hat": 1},
    "validation": {"dress": 1, "hat": 1},
    "test": {"dress": 1, "hat": 2},
}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _jpeg(color=(200, 30, 30), size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_archive(path: Path, counts=TINY_COUNTS, top="clothing-dataset-small-master", extra=()) -> Path:
    """A zip shaped like GitHub's archive of the dataset, with ``counts`` JPEGs per split and class."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/", b"")
        zf.writestr(f"{top}/LICENSE", b"CC0\n")
        zf.writestr(f"{top}/README.md", b"clothing\n")
        for split, per_class in counts.items():
            for cls, n in per_class.items():
                for i in range(n):
                    zf.writestr(f"{top}/{split}/{cls}/{cls}_{i:03d}.jpg", _jpeg((40 * i % 256, 90, 150)))
        for name, payload in extra:
            zf.writestr(name, payload)
    return path


def _listing(root: Path) -> list[str]:
    return sorted(os.listdir(root)) if root.exists() else []


@pytest.fixture
def tiny_counts(monkeypatch):
    monkeypatch.setattr(data, "EXPECTED_COUNTS", TINY_COUNTS)
    monkeypatch.setattr(data, "_RETRY_WAITS", (0.0, 0.0, 0.0))
    return TINY_COUNTS


@pytest.fixture
def root(tmp_path, isolated_data_root, tiny_counts):
    """An isolated data root that already holds a README, like the repository's data/."""
    isolated_data_root.mkdir()
    (isolated_data_root / "README.md").write_text("data\n")
    return isolated_data_root


# ---------------------------------------------------------------------------------------------
# constants and paths
# ---------------------------------------------------------------------------------------------

def test_constants_describe_the_pinned_dataset():
    assert CLASSES_10 == sorted(CLASSES_10) and set(CLASSES_7) < set(CLASSES_10)
    assert set(CLASSES_10) - set(CLASSES_7) == {"outwear", "shirt", "skirt"}
    assert data.COMMIT in data.URL and data.URL.endswith(".zip")
    assert data.SPLITS == ("train", "validation", "test")
    assert all(sorted(per_class) == CLASSES_10 for per_class in data.EXPECTED_COUNTS.values())
    assert data._expected_totals(CLASSES_7) == {"train": 2482, "validation": 276, "test": 296}
    assert sum(data._expected_totals().values()) == 3781


def test_data_root_is_the_repository_data_folder_from_any_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_KIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data.data_root() == REPO / "data"
    assert data.dataset_dir() == REPO / "data" / "clothing-dataset-small"
    assert data.dataset_dir(tmp_path) == tmp_path / "clothing-dataset-small"


def test_data_root_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_KIT_DATA", str(tmp_path / "elsewhere"))
    assert data.data_root() == tmp_path / "elsewhere"
    assert data.dataset_dir() == tmp_path / "elsewhere" / "clothing-dataset-small"


def test_shared_archive_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_KIT_ARCHIVE", str(tmp_path / "copy.zip"))
    assert data._shared_archive() == tmp_path / "copy.zip"


# ---------------------------------------------------------------------------------------------
# fetch: success, no-op, download
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("top", ["clothing-dataset-small-master", f"clothing-dataset-small-{data.COMMIT}"])
def test_fetch_extracts_a_good_archive_and_rerun_is_a_no_op(root, tmp_path, capsys, top):
    archive = make_archive(tmp_path / "good.zip", top=top)
    target = fetch(archive)
    assert target == root / "clothing-dataset-small"
    assert _listing(root) == ["README.md", "clothing-dataset-small"]  # no temp files left
    assert _listing(target) == [".complete", "LICENSE", "README.md", "test", "train", "validation"]
    assert len(list((target / "train" / "dress").glob("*.jpg"))) == 2
    capsys.readouterr()

    assert fetch(tmp_path / "gone.zip") == target  # already there: the archive is not even opened
    assert "already fetched at" in capsys.readouterr().out
    assert main(["fetch"]) == 0


def test_fetch_uses_the_shared_archive_when_present(root, tmp_path, monkeypatch):
    archive = make_archive(tmp_path / "copy.zip")
    monkeypatch.setenv("FASHION_KIT_ARCHIVE", str(archive))
    monkeypatch.setattr(data, "_shared_archive", REAL_SHARED_ARCHIVE)  # undo isolated_data_root's patch
    assert (fetch(quiet=True) / "train" / "hat").is_dir()


class _FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def test_fetch_downloads_with_retries_and_logs_the_sha256(root, tmp_path, monkeypatch, capsys):
    payload = make_archive(tmp_path / "remote.zip").read_bytes()
    calls = []

    def flaky_urlopen(url, timeout):
        calls.append(url)
        if len(calls) == 1:
            raise TimeoutError("timed out")
        return _FakeResponse(payload)

    monkeypatch.setattr(data.urllib.request, "urlopen", flaky_urlopen)
    target = fetch(url="https://example.invalid/x.zip")
    assert len(calls) == 2 and (target / ".complete").is_file()
    assert "SHA256 of the downloaded archive" in capsys.readouterr().out
    assert _listing(root) == ["README.md", "clothing-dataset-small"]  # the download is not kept


# ---------------------------------------------------------------------------------------------
# fetch: every failure says what to do and leaves nothing behind
# ---------------------------------------------------------------------------------------------

def _truncated(tmp_path):
    path = make_archive(tmp_path / "cut.zip")
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    return path


def _bad_crc(tmp_path):
    path = make_archive(tmp_path / "crc.zip")
    raw = bytearray(path.read_bytes())
    at = raw.find(_jpeg((0, 90, 150))) + 200  # inside the first photo's stored bytes
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _not_a_zip(tmp_path):
    path = tmp_path / "photos.zip"
    path.write_text("<html>rate limited</html>")
    return path


def _lacking_a_class(tmp_path):
    counts = {split: dict(per_class) for split, per_class in TINY_COUNTS.items()}
    del counts["train"]["hat"]
    return make_archive(tmp_path / "lacks.zip", counts=counts)


def _short_class(tmp_path):
    counts = {split: dict(per_class) for split, per_class in TINY_COUNTS.items()}
    counts["train"]["dress"] = 1
    return make_archive(tmp_path / "short.zip", counts=counts)


def _two_top_folders(tmp_path):
    return make_archive(tmp_path / "two.zip", extra=[("other/notes.txt", b"x")])


def _wrong_shared_copy(tmp_path):  # named like the shared copy, so its sha256 is checked
    (tmp_path / "copy").mkdir()
    return make_archive(tmp_path / "copy" / data.SHARED_ARCHIVE_NAME)


FAILURES = {
    "truncated": (_truncated, "archive is truncated or corrupt"),
    "bad-crc": (_bad_crc, "archive is truncated or corrupt"),
    "not-a-zip": (_not_a_zip, "not a zip archive"),
    "missing-path": (lambda tmp_path: tmp_path / "nowhere.zip", "archive not found"),
    "a-folder": (lambda tmp_path: tmp_path, "not a zip archive"),
    "lacks-a-class": (_lacking_a_class, "train/hat is missing (expected 1 .jpg files)"),
    "short-class": (_short_class, "train/dress has 1 .jpg files, expected 2"),
    "two-top-folders": (_two_top_folders, "expected one top-level folder"),
    "sha256": (_wrong_shared_copy, "sha256 mismatch"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_fetch_failure_raises_fetch_error_and_leaves_nothing(root, tmp_path, case, capsys):
    build, message = FAILURES[case]
    archive = build(tmp_path)
    with pytest.raises(FetchError) as info:
        fetch(archive, quiet=True)
    assert message in str(info.value)
    assert _listing(root) == ["README.md"]

    assert main(["fetch", "--archive", str(archive), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    assert _listing(root) == ["README.md"]


def test_fetch_into_a_new_root_removes_it_again_on_failure(tmp_path, tiny_counts, isolated_data_root):
    with pytest.raises(FetchError):
        fetch(_not_a_zip(tmp_path), root=tmp_path / "new" / "data")
    assert not (tmp_path / "new" / "data").exists()


def test_no_network_says_how_to_use_a_local_archive(root, monkeypatch):
    attempts = []

    def offline(url, timeout):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(FetchError) as info:
        fetch(quiet=True)
    assert len(attempts) == 4  # the first try and 3 retries
    assert "could not download" in str(info.value) and "--archive" in str(info.value)
    assert _listing(root) == ["README.md"]


def test_http_404_is_not_retried(root, monkeypatch):
    attempts = []

    def not_found(url, timeout):
        attempts.append(url)
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(data.urllib.request, "urlopen", not_found)
    with pytest.raises(FetchError, match="Not Found"):
        fetch(quiet=True)
    assert len(attempts) == 1 and _listing(root) == ["README.md"]


def _extract_failing_on_call(monkeypatch, n: int, exc: BaseException):
    real_extract = zipfile.ZipFile.extract
    calls = []

    def extract(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) % n == 0:  # fails again on a second run
            raise exc
        return real_extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", extract)


def test_disk_full_while_extracting(root, tmp_path, monkeypatch, capsys):
    archive = make_archive(tmp_path / "good.zip")
    _extract_failing_on_call(monkeypatch, 5, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(FetchError, match=r"disk full while extracting: free \d+ MB and retry"):
        fetch(archive, quiet=True)
    assert _listing(root) == ["README.md"]
    assert main(["fetch", "--archive", str(archive)]) == 1
    assert "disk full while extracting" in capsys.readouterr().err


def test_too_little_free_space_fails_before_writing(root, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(data.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 10))
    with pytest.raises(FetchError, match="disk full while extracting: free 1 MB and retry"):
        fetch(make_archive(tmp_path / "good.zip"), quiet=True)
    assert _listing(root) == ["README.md"]


def test_disk_full_while_downloading(root, monkeypatch):
    class FullDisk(_FakeResponse):
        def read(self, *args):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: FullDisk(b"PK"))
    with pytest.raises(FetchError, match="disk full while fetching: free"):
        fetch(quiet=True)
    assert _listing(root) == ["README.md"]


def test_ctrl_c_while_extracting_leaves_nothing(root, tmp_path, monkeypatch, capsys):
    archive = make_archive(tmp_path / "good.zip")
    _extract_failing_on_call(monkeypatch, 6, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        fetch(archive, quiet=True)
    assert _listing(root) == ["README.md"]
    assert main(["fetch", "--archive", str(archive), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _listing(root) == ["README.md"]


def test_an_incomplete_dataset_folder_is_not_taken_for_a_fetched_one(root, tmp_path):
    (root / "clothing-dataset-small" / "train").mkdir(parents=True)  # e.g. a hand-made copy
    with pytest.raises(FetchError, match="exists but is incomplete"):
        fetch(make_archive(tmp_path / "good.zip"), quiet=True)


def test_cli_prints_no_traceback_in_a_real_process(tmp_path):
    env = dict(os.environ, FASHION_KIT_DATA=str(tmp_path / "data"))
    result = subprocess.run(
        [sys.executable, "-m", "helper_utils.data", "fetch", "--archive", str(tmp_path / "none.zip")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: archive not found") and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------------------------
# ClothingDataset
# ---------------------------------------------------------------------------------------------

def test_dataset_matches_torchvision_imagefolder(synthetic_imagefolder):
    ours = ClothingDataset("train", root=synthetic_imagefolder, image_size=16, cache=False)
    split_dir = synthetic_imagefolder / "clothing-dataset-small" / "train"
    theirs = ImageFolder(str(split_dir), transform=T.Resize((16, 16)))
    assert ours.classes == theirs.classes == CLASSES_7
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples and ours.targets == theirs.targets
    assert ours.root == theirs.root
    for i in range(len(ours)):
        image, label = ours[i]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (16, 16)
        assert label == theirs[i][1]
        np.testing.assert_array_equal(np.asarray(image), np.asarray(theirs[i][0]))


def test_dataset_applies_the_transform_and_exports_tensors(synthetic_imagefolder):
    dataset = ClothingDataset("validation", root=synthetic_imagefolder, transform=T.ToTensor(), cache=False)
    image, label = dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and label == 0
    images, targets = dataset.as_tensors()
    assert images.shape == (21, 3, 64, 64) and images.dtype == torch.uint8
    assert targets.dtype == torch.long and targets.tolist() == dataset.targets
    torch.testing.assert_close(images[0].float() / 255, image)
    assert dataset.images.shape == (21, 64, 64, 3) and dataset.images.dtype == np.uint8
    assert "Number of datapoints: 21" in repr(dataset)


def test_any_image_mode_becomes_rgb(synthetic_imagefolder):
    folder = synthetic_imagefolder / "clothing-dataset-small" / "test" / "hat"
    Image.new("L", (30, 20), 77).save(folder / "gray.jpg")
    Image.new("LA", (30, 20), (90, 10)).save(folder / "gray_alpha.png")
    Image.new("RGBA", (30, 20), (10, 200, 30, 0)).save(folder / "rgba.png")
    Image.new("CMYK", (30, 20), (0, 255, 0, 0)).save(folder / "cmyk.jpg")
    Image.new("I;16", (30, 20), 1000).save(folder / "deep.png")
    palette = Image.new("P", (30, 20), 1)
    palette.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no PIL warnings about palettes either
        dataset = ClothingDataset("test", classes=["hat"], root=synthetic_imagefolder, image_size=8, cache=False)
    assert len(dataset) == 9 and not dataset.skipped
    by_name = {Path(path).name: i for i, (path, _) in enumerate(dataset.samples)}
    assert dataset.images[by_name["gray.jpg"]][0, 0].tolist() == [77, 77, 77]
    assert dataset.images[by_name["rgba.png"]][0, 0].tolist() == [255, 255, 255]  # transparent: on white, as queries
    assert dataset.images[by_name["palette.png"]][0, 0].tolist() == [250, 20, 20]
    assert all(dataset[i][0].mode == "RGB" and dataset[i][0].size == (8, 8) for i in range(len(dataset)))


def test_unreadable_images_are_skipped_with_one_warning_each(synthetic_imagefolder):
    folder = synthetic_imagefolder / "clothing-dataset-small" / "train" / "dress"
    (folder / "garbage.jpg").write_bytes(b"not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    whole = _jpeg(size=(64, 64))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning) as record:
        dataset = ClothingDataset("train", root=synthetic_imagefolder, cache=False)
    messages = [str(w.message) for w in record if "skipped unreadable image" in str(w.message)]
    assert len(messages) == 3
    assert {Path(p).name for p in dataset.skipped} == {"garbage.jpg", "empty.jpg", "truncated.jpg"}
    assert any(m.startswith(f"skipped unreadable image {folder / 'truncated.jpg'}: QueryImageError")
               and "truncated or corrupt" in m for m in messages)
    assert len(dataset) == 21 == len(dataset.images) == len(dataset.targets)
    assert all(Path(path).name not in {"garbage.jpg", "empty.jpg"} for path, _ in dataset.samples)


def test_a_corrupt_jpeg_passes_fetch_and_is_skipped_by_the_dataset(root, tmp_path, monkeypatch):
    counts = {split: dict(per_class) for split, per_class in TINY_COUNTS.items()}
    counts["train"]["hat"] = 2
    archive = make_archive(tmp_path / "corrupt.zip", counts=TINY_COUNTS,
                           extra=[("clothing-dataset-small-master/train/hat/zz_broken.jpg", b"\xff\xd8 broken")])
    monkeypatch.setattr(data, "EXPECTED_COUNTS", counts)  # the broken file is the second hat
    fetch(archive, quiet=True)  # fetch checks files and CRCs, not pixels
    with pytest.warns(UserWarning, match="zz_broken.jpg"):
        dataset = ClothingDataset("train", classes=["dress", "hat"], cache=False)
    assert len(dataset) == 3 and [Path(p).name for p in dataset.skipped] == ["zz_broken.jpg"]


@pytest.mark.parametrize("classes, expected", [("seven", CLASSES_7), ("all", CLASSES_10), ("ten", CLASSES_10),
                                               (["shoes", "dress"], ["dress", "shoes"])])
def test_class_selection(make_imagefolder, classes, expected):
    root = make_imagefolder(classes=CLASSES_10, splits=("train",), per_class=1, size=(8, 8))
    dataset = ClothingDataset("train", classes=classes, root=root, image_size=8, cache=False)
    assert dataset.classes == expected and len(dataset) == len(expected)
    assert dataset.targets == list(range(len(expected)))


@pytest.mark.parametrize("kwargs, message", [
    ({"classes": "eight"}, "classes must be one of ['all', 'seven', 'ten']"),
    ({"classes": ["dress", "socks"]}, "classes must be distinct names from"),
    ({"classes": ["hat", "hat"]}, "classes must be distinct names from"),
    ({"classes": []}, "classes must be distinct names from"),
    ({"split": "val"}, "split must be one of ['train', 'validation', 'test'], got 'val'"),
    ({"image_size": 0}, "image_size must be a positive int"),
])
def test_bad_arguments_name_the_allowed_values(synthetic_imagefolder, kwargs, message):
    with pytest.raises(ValueError) as info:
        ClothingDataset(root=synthetic_imagefolder, cache=False, **kwargs)
    assert message in str(info.value)


def test_missing_split_says_how_to_fetch(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        ClothingDataset("test", root=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    for fix in ("python -m helper_utils.data fetch", "make data", "fetch()"):
        assert fix in str(info.value)


def test_missing_class_folder_is_reported(make_imagefolder):
    root = make_imagefolder(classes=["dress", "hat"], splits=("train",), per_class=1)
    with pytest.raises(DatasetNotFoundError, match="no folder for"):
        ClothingDataset("train", root=root, cache=False)


# ---------------------------------------------------------------------------------------------
# the on-disk cache
# ---------------------------------------------------------------------------------------------

def test_second_construction_loads_from_the_cache_without_decoding(synthetic_imagefolder, monkeypatch):
    first = ClothingDataset("train", root=synthetic_imagefolder, image_size=32)
    cache_files = list((synthetic_imagefolder / "cache").glob("*.npz"))
    assert [f.name.split("-")[:3] for f in cache_files] == [["train", "seven", "32px"]]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image although the cache was there")

    monkeypatch.setattr(data.Image, "open", no_decoding)
    second = ClothingDataset("train", root=synthetic_imagefolder, image_size=32)
    np.testing.assert_array_equal(first.images, second.images)
    assert first.samples == second.samples and first.targets == second.targets


def test_a_changed_folder_rebuilds_the_cache(synthetic_imagefolder):
    assert len(ClothingDataset("test", root=synthetic_imagefolder, image_size=8)) == 21
    new_photo = synthetic_imagefolder / "clothing-dataset-small" / "test" / "hat" / "new.jpg"
    Image.new("RGB", (9, 9), "red").save(new_photo)
    assert len(ClothingDataset("test", root=synthetic_imagefolder, image_size=8)) == 22
    assert len(list((synthetic_imagefolder / "cache").glob("*.npz"))) == 1  # the stale cache is gone


def test_cached_skips_are_still_reported(synthetic_imagefolder):
    (synthetic_imagefolder / "clothing-dataset-small" / "test" / "hat" / "bad.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="bad.jpg"):
        ClothingDataset("test", root=synthetic_imagefolder, image_size=8)
    with pytest.warns(UserWarning, match="bad.jpg"):
        again = ClothingDataset("test", root=synthetic_imagefolder, image_size=8)
    assert len(again) == 21 and len(again.skipped) == 1


def test_a_damaged_cache_is_rebuilt(synthetic_imagefolder):
    ClothingDataset("validation", root=synthetic_imagefolder, image_size=8)
    (cache_file,) = (synthetic_imagefolder / "cache").glob("*.npz")
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        assert len(ClothingDataset("validation", root=synthetic_imagefolder, image_size=8)) == 21


def test_cache_false_writes_nothing(synthetic_imagefolder):
    ClothingDataset("validation", root=synthetic_imagefolder, image_size=8, cache=False)
    assert not (synthetic_imagefolder / "cache").exists()


def test_cache_command_builds_every_split(synthetic_imagefolder, capsys):
    assert main(["cache", "--root", str(synthetic_imagefolder), "--image-size", "8"]) == 0
    assert "train: 21 images of 7 classes at 8x8" in capsys.readouterr().out
    assert len(list((synthetic_imagefolder / "cache").glob("*.npz"))) == 3


# ---------------------------------------------------------------------------------------------
# make_loader
# ---------------------------------------------------------------------------------------------

def test_make_loader_batches_and_seeded_shuffling(synthetic_imagefolder):
    dataset = ClothingDataset("train", root=synthetic_imagefolder, image_size=8, transform=T.ToTensor(),
                              cache=False)
    images, labels = next(iter(make_loader(dataset, batch_size=5)))
    assert images.shape == (5, 3, 8, 8) and labels.dtype == torch.long

    def order(seed):
        return torch.cat([y for _, y in make_loader(dataset, batch_size=4, shuffle=True, seed=seed)]).tolist()

    assert order(0) == order(0) and order(0) != order(1)
    loader = make_loader(dataset, batch_size=4, drop_last=True)
    assert len(loader) == 5 and not loader.persistent_workers


def test_make_loader_rejects_bad_sizes(synthetic_imagefolder):
    with pytest.raises(ValueError, match="batch_size"):
        make_loader([], batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        make_loader([], num_workers=-1)


# ---------------------------------------------------------------------------------------------
# the real archive (slow: ~100 MB to extract)
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason=f"no shared archive at {SHARED_ARCHIVE}")
def test_fetch_the_real_archive(tmp_path):
    target = fetch(SHARED_ARCHIVE, root=tmp_path, quiet=True)
    for split, total in {"train": 2482, "validation": 276, "test": 296}.items():
        assert sum(len(list((target / split / cls).glob("*.jpg"))) for cls in CLASSES_7) == total
    for split, per_class in data.EXPECTED_COUNTS.items():
        for cls, n in per_class.items():
            assert len(list((target / split / cls).glob("*.jpg"))) == n, (split, cls)
    assert (target / "LICENSE").is_file()
