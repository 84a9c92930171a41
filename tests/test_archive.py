"""helper_utils.archive: the verified, atomic fetch, on tiny synthetic archives (and the real one when it is here)."""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import urllib.error
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest
from PIL import Image

import helper_utils.archive as archive
from helper_utils import paths
import helper_utils.data as data
from helper_utils.archive import CLASSES_10, FetchError, fetch
from helper_utils.data import CLASSES_7, ClothingDataset, main

REPO = Path(__file__).resolve().parents[1]
REAL_SHARED_ARCHIVE = archive._shared_archive
SHARED_ARCHIVE = paths.shared_archive_candidates(archive.SHARED_ARCHIVE_NAME)[0]  # $FASHION_KIT_ARCHIVE, or beside the clone

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


def pin(monkeypatch, zip_path: Path) -> dict:
    """Make the files of ``zip_path`` the pinned ones (for tiny stand-ins of the real archive)."""
    with zipfile.ZipFile(zip_path) as zf:
        files = archive.listing(zf, zf.namelist()[0].split("/")[0])
    monkeypatch.setattr(archive, "pinned_files", lambda: files)
    return files


@pytest.fixture
def tiny_counts(monkeypatch, tmp_path_factory):
    """The tiny archive of ``make_archive`` is the pinned one (TINY_COUNTS photos, LICENSE and README)."""
    monkeypatch.setattr(archive, "EXPECTED_COUNTS", TINY_COUNTS)
    monkeypatch.setattr(archive, "_RETRY_WAITS", (0.0, 0.0, 0.0))
    pin(monkeypatch, make_archive(tmp_path_factory.mktemp("pinned") / "pinned.zip"))
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

def test_the_pinned_file_list_matches_the_counts_of_the_readme():
    photos = [name.split("/") for name in archive.pinned_files() if name.endswith(".jpg")]
    counts = {(split, cls): 0 for split, per_class in archive.EXPECTED_COUNTS.items() for cls in per_class}
    for split, cls, _ in photos:
        counts[split, cls] += 1
    assert counts == {(split, cls): n for split, per_class in archive.EXPECTED_COUNTS.items() for cls, n in per_class.items()}
    assert len(photos) == 3781 and {"LICENSE", "README.md"} <= set(archive.pinned_files())


@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason=f"no shared archive at {SHARED_ARCHIVE}")
def test_the_pinned_file_list_is_the_real_archives_central_directory():
    from tools.pin_dataset import pinned_text

    assert pinned_text(SHARED_ARCHIVE) == archive.PINNED_FILES.read_text(encoding="utf-8")


def test_constants_describe_the_pinned_dataset():
    assert CLASSES_10 == sorted(CLASSES_10) and set(CLASSES_7) < set(CLASSES_10)
    assert set(CLASSES_10) - set(CLASSES_7) == {"outwear", "shirt", "skirt"}
    assert archive.COMMIT in archive.URL and archive.URL.endswith(".zip")
    assert archive.SPLITS == ("train", "validation", "test")
    assert all(sorted(per_class) == CLASSES_10 for per_class in archive.EXPECTED_COUNTS.values())
    assert archive._expected_totals(CLASSES_7) == {"train": 2482, "validation": 276, "test": 296}
    assert sum(archive._expected_totals().values()) == 3781


def test_data_root_is_the_repository_data_folder_from_any_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_KIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data.data_root() == REPO / "data"
    assert archive.dataset_dir() == REPO / "data" / "clothing-dataset-small"
    assert archive.dataset_dir(tmp_path) == tmp_path / "clothing-dataset-small"


def test_data_root_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_KIT_DATA", str(tmp_path / "elsewhere"))
    assert data.data_root() == tmp_path / "elsewhere"
    assert archive.dataset_dir() == tmp_path / "elsewhere" / "clothing-dataset-small"


def test_shared_archive_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_KIT_ARCHIVE", str(tmp_path / "copy.zip"))
    assert archive._shared_archive() == tmp_path / "copy.zip"


# ---------------------------------------------------------------------------------------------
# fetch: success, no-op, download
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("top", ["clothing-dataset-small-master", f"clothing-dataset-small-{archive.COMMIT}"])
def test_fetch_extracts_a_good_archive_and_rerun_is_a_no_op(root, tmp_path, capsys, top):
    zip_path = make_archive(tmp_path / "good.zip", top=top)
    target = fetch(zip_path)
    assert target == root / "clothing-dataset-small"
    assert _listing(root) == ["README.md", "clothing-dataset-small"]  # no temp files left
    assert _listing(target) == [".complete", "LICENSE", "README.md", "test", "train", "validation"]
    assert len(list((target / "train" / "dress").glob("*.jpg"))) == 2
    capsys.readouterr()

    assert fetch(tmp_path / "gone.zip") == target  # already there: the archive is not even opened
    assert "already fetched at" in capsys.readouterr().out
    assert main(["fetch"]) == 0


def test_fetch_uses_the_shared_archive_when_present(root, tmp_path, monkeypatch):
    zip_path = make_archive(tmp_path / "copy.zip")
    monkeypatch.setenv("FASHION_KIT_ARCHIVE", str(zip_path))
    monkeypatch.setattr(archive, "_shared_archive", REAL_SHARED_ARCHIVE)  # undo isolated_data_root's patch
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

    monkeypatch.setattr(archive.urllib.request, "urlopen", flaky_urlopen)
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
    return make_archive(tmp_path / "copy" / archive.SHARED_ARCHIVE_NAME)


FAILURES = {
    "truncated": (_truncated, "archive is truncated or corrupt"),
    "bad-crc": (_bad_crc, "archive is truncated or corrupt"),
    "not-a-zip": (_not_a_zip, "not a zip archive"),
    "missing-path": (lambda tmp_path: tmp_path / "nowhere.zip", "archive not found"),
    "a-folder": (lambda tmp_path: tmp_path, "not a zip archive"),
    "lacks-a-class": (_lacking_a_class, "'train/hat/hat_000.jpg' is missing"),
    "short-class": (_short_class, "'train/dress/dress_001.jpg' is missing"),
    "two-top-folders": (_two_top_folders, "expected one top-level folder"),
    "sha256": (_wrong_shared_copy, "sha256 mismatch"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_fetch_failure_raises_fetch_error_and_leaves_nothing(root, tmp_path, case, capsys):
    build, message = FAILURES[case]
    zip_path = build(tmp_path)
    with pytest.raises(FetchError) as info:
        fetch(zip_path, quiet=True)
    assert message in str(info.value)
    assert _listing(root) == ["README.md"]

    assert main(["fetch", "--archive", str(zip_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
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

    monkeypatch.setattr(archive.urllib.request, "urlopen", offline)
    with pytest.raises(FetchError) as info:
        fetch(quiet=True)
    assert len(attempts) == 4  # the first try and 3 retries
    assert "could not download" in str(info.value) and archive.OFFLINE_COMMAND in str(info.value)
    assert _listing(root) == ["README.md"]


def test_http_404_is_not_retried(root, monkeypatch):
    attempts = []

    def not_found(url, timeout):
        attempts.append(url)
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(archive.urllib.request, "urlopen", not_found)
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
    zip_path = make_archive(tmp_path / "good.zip")
    _extract_failing_on_call(monkeypatch, 5, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(FetchError, match=r"disk full while extracting: free \d+ MB and retry"):
        fetch(zip_path, quiet=True)
    assert _listing(root) == ["README.md"]
    assert main(["fetch", "--archive", str(zip_path)]) == 1
    assert "disk full while extracting" in capsys.readouterr().err


def test_too_little_free_space_fails_before_writing(root, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 10))
    with pytest.raises(FetchError, match="disk full while extracting: free 1 MB and retry"):
        fetch(make_archive(tmp_path / "good.zip"), quiet=True)
    assert _listing(root) == ["README.md"]


def test_disk_full_while_downloading(root, monkeypatch):
    class FullDisk(_FakeResponse):
        def read(self, *args):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive.urllib.request, "urlopen", lambda url, timeout: FullDisk(b"PK"))
    with pytest.raises(FetchError, match="disk full while fetching: free"):
        fetch(quiet=True)
    assert _listing(root) == ["README.md"]


def test_ctrl_c_while_extracting_leaves_nothing(root, tmp_path, monkeypatch, capsys):
    zip_path = make_archive(tmp_path / "good.zip")
    _extract_failing_on_call(monkeypatch, 6, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        fetch(zip_path, quiet=True)
    assert _listing(root) == ["README.md"]
    assert main(["fetch", "--archive", str(zip_path), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _listing(root) == ["README.md"]


def test_an_incomplete_dataset_folder_is_not_taken_for_a_fetched_one(root, tmp_path):
    (root / "clothing-dataset-small" / "train").mkdir(parents=True)  # e.g. a hand-made copy
    with pytest.raises(FetchError, match="exists but is incomplete"):
        fetch(make_archive(tmp_path / "good.zip"), quiet=True)


def test_a_corrupt_jpeg_passes_fetch_and_is_skipped_by_the_dataset(root, tmp_path, monkeypatch):
    zip_path = make_archive(tmp_path / "corrupt.zip", counts=TINY_COUNTS,
                            extra=[("clothing-dataset-small-master/train/hat/zz_broken.jpg", b"\xff\xd8 broken")])
    pin(monkeypatch, zip_path)  # as if the pinned commit held a broken photo
    fetch(zip_path, quiet=True)  # fetch checks files and CRCs, not pixels
    with pytest.warns(UserWarning, match="zz_broken.jpg"):
        dataset = ClothingDataset("train", classes=["dress", "hat"], cache=False)
    assert len(dataset) == 3 and [Path(p).name for p in dataset.skipped] == ["zz_broken.jpg"]


# ---------------------------------------------------------------------------------------------
# the offline fetch, as the README, data/README.md and the error message write it
# ---------------------------------------------------------------------------------------------

def _fresh_shell(tmp_path) -> dict[str, str]:
    """The environment of a new terminal: no virtual environment activated, no kit variables but the data root."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "FASHION_KIT_DATA": str(tmp_path / "data")}


needs_make = pytest.mark.skipif(shutil.which("make") is None or not (REPO / ".venv" / ".installed").is_file(),
                                reason="needs make and the kit's .venv (make setup)")


def _make_data(tmp_path, archive_path: Path) -> subprocess.CompletedProcess:
    # -o: take the installed .venv as up to date, whatever the clock says about pyproject.toml
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "data", f"ARCHIVE={archive_path}"],
                          cwd=REPO, env=_fresh_shell(tmp_path), capture_output=True, text=True, timeout=300)


def test_the_docs_and_the_error_give_the_same_offline_command(root, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(archive.urllib.request, "urlopen", offline)
    with pytest.raises(FetchError) as info:
        fetch(quiet=True)
    assert archive.OFFLINE_COMMAND in str(info.value) and "python -m" not in str(info.value)
    for doc in ("README.md", "data/README.md"):
        assert archive.OFFLINE_COMMAND in (REPO / doc).read_text(), doc


@needs_make
def test_the_offline_command_runs_the_kits_python_from_a_fresh_shell(tmp_path):
    result = _make_data(tmp_path, tmp_path / "no such.zip")
    assert result.returncode != 0
    assert result.stderr.startswith("error: archive not found") and "no such.zip" in result.stderr  # the kit answered
    assert "ModuleNotFoundError" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------------------------
# the real archive (slow: ~100 MB to extract)
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@needs_make
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason=f"no shared archive at {SHARED_ARCHIVE}")
def test_fetch_the_real_archive_with_the_offline_command(tmp_path):
    result = _make_data(tmp_path, SHARED_ARCHIVE)
    assert result.returncode == 0, result.stderr[-2000:]
    target = tmp_path / "data" / "clothing-dataset-small"
    for split, total in {"train": 2482, "validation": 276, "test": 296}.items():
        assert sum(len(list((target / split / cls).glob("*.jpg"))) for cls in CLASSES_7) == total
    for split, per_class in archive.EXPECTED_COUNTS.items():
        for cls, n in per_class.items():
            assert len(list((target / split / cls).glob("*.jpg"))) == n, (split, cls)
    assert (target / "LICENSE").is_file()
