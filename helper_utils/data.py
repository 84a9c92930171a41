"""The clothing photos: fetch them once, then load each split as a cached, ImageFolder-like dataset.

Typical use in a notebook::

    from helper_utils.data import ClothingDataset, fetch, make_loader

    fetch()                                  # once; a no-op when the data is already there
    train_set = ClothingDataset("train")     # 2482 photos of 7 classes, 64x64 RGB
    train_loader = make_loader(train_set, batch_size=64, shuffle=True, seed=0)

From a terminal (``make data`` runs the first line)::

    python -m helper_utils.data fetch [--archive PATH] [--root DIR]
    python -m helper_utils.data cache [--classes seven|all] [--image-size 64]

Where things live: ``data_root()`` is ``<repo>/data`` unless ``$FASHION_KIT_DATA`` says
otherwise; the photos go to ``data_root()/clothing-dataset-small`` and the decoded-image
caches to ``data_root()/cache``. ``$FASHION_KIT_ARCHIVE`` names a local copy of the archive
for machines without internet.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from helper_utils import paths
from helper_utils.files import atomic_path, sha256_file
from helper_utils.images import decode_image
from helper_utils.progress import tqdm

__all__ = [
    "CLASSES_7",
    "CLASSES_10",
    "SPLITS",
    "COMMIT",
    "URL",
    "SHARED_ARCHIVE_NAME",
    "SHARED_ARCHIVE_SHA256",
    "EXPECTED_COUNTS",
    "FetchError",
    "DatasetNotFoundError",
    "data_root",
    "dataset_dir",
    "fetch",
    "ClothingDataset",
    "make_loader",
    "main",
]

# ---------------------------------------------------------------------------------------------
# The dataset: clothing-dataset-small (CC0), pinned to one commit so every run sees the same files
# ---------------------------------------------------------------------------------------------

CLASSES_7 = ["dress", "hat", "longsleeve", "pants", "shoes", "shorts", "t-shirt"]  # the course's classes
CLASSES_10 = sorted(CLASSES_7 + ["outwear", "shirt", "skirt"])  # sorted, as ImageFolder sorts them
SPLITS = ("train", "validation", "test")

COMMIT = "11961516512414bf9f6c150a832cfd21b54a6b54"
URL = f"https://github.com/alexeygrigorev/clothing-dataset-small/archive/{COMMIT}.zip"

# The copy of the archive kept for offline machines and CI (../shared/datasets/ next to the repo).
SHARED_ARCHIVE_NAME = "clothing-dataset-small-master.zip"
SHARED_ARCHIVE_SIZE = 106_234_428  # bytes
SHARED_ARCHIVE_SHA256 = "e0bbb94f64dd058921c3d94829efc2ed6737197a3b3de448c7091963a4a11d3b"

DATASET_FOLDER = "clothing-dataset-small"  # the folder fetch creates under data_root()

# Number of .jpg files per split and class in the pinned archive; fetch checks every one.
EXPECTED_COUNTS = {
    "train": {
        "dress": 241, "hat": 123, "longsleeve": 455, "outwear": 184, "pants": 468,
        "shirt": 290, "shoes": 198, "shorts": 202, "skirt": 112, "t-shirt": 795,
    },
    "validation": {
        "dress": 32, "hat": 14, "longsleeve": 49, "outwear": 24, "pants": 49,
        "shirt": 29, "shoes": 26, "shorts": 25, "skirt": 12, "t-shirt": 81,
    },
    "test": {
        "dress": 15, "hat": 12, "longsleeve": 72, "outwear": 38, "pants": 42,
        "shirt": 26, "shoes": 73, "shorts": 30, "skirt": 12, "t-shirt": 52,
    },
}

# The image types a split folder may hold (the same list as torchvision's ImageFolder).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_MARKER = ".complete"  # written into the dataset folder just before it is moved into place
_CACHE_VERSION = 1  # bump when the cached arrays change meaning (e.g. a new resize method)
_RETRY_WAITS = (2.0, 5.0, 10.0)  # seconds before each of the 3 download retries
_TIMEOUT_S = 30  # socket timeout of the download
_MB = 1024 * 1024
_FETCH_NEEDS_MB = 250  # a download needs room for the archive (~102 MB) and its contents (~110 MB)
# Bounds checked before extracting (the real archive: 3,817 entries, 106 MB, largest ratio 2.5, largest photo < 1 MB)
_MAX_ENTRIES = 10_000
_MAX_UNCOMPRESSED = 400 * 1024 * 1024
_MAX_ENTRY_BYTES = 20 * 1024 * 1024
_MAX_RATIO = 20
_STALE_AFTER_S = 6 * 3600  # a work folder whose owner cannot be checked is stale after this long
_OWNER_FILE = "owner.json"  # written first into every work folder: who made it, so others can tell it is stale

FETCH_HINT = (
    "run `python -m helper_utils.data fetch` (or `make data`) in the repository, "
    "or `helper_utils.fetch()` in a notebook"
)


class FetchError(RuntimeError):
    """Fetching the dataset failed; the message says what was wrong and what to do next."""


class DatasetNotFoundError(FileNotFoundError):
    """A split of the dataset is not on disk; the message says how to fetch it."""


# ---------------------------------------------------------------------------------------------
# Where the data lives
# ---------------------------------------------------------------------------------------------

def data_root() -> Path:
    """The folder holding the dataset and its caches.

    Returns:
        ``$FASHION_KIT_DATA`` when set, else the repository's ``data/`` folder (found from this
        file, so the answer is the same from any working directory).
    """
    return paths.data_root()


def dataset_dir(root: str | Path | None = None) -> Path:
    """The folder ``fetch`` writes the photos to: ``<root>/clothing-dataset-small``.

    Args:
        root: the data root; ``None`` means ``data_root()``.
    """
    return Path(root).expanduser().resolve() / DATASET_FOLDER if root else data_root() / DATASET_FOLDER


def _shared_archive() -> Path | None:
    """A local copy of the archive: ``$FASHION_KIT_ARCHIVE``, else ``<repo>/../shared/datasets/...``."""
    candidate = paths.shared_archive_candidates(SHARED_ARCHIVE_NAME)[0]
    if os.environ.get(paths.ARCHIVE_ENV):
        return candidate
    return candidate if candidate.is_file() else None


# ---------------------------------------------------------------------------------------------
# fetch: take or download the archive, verify it, extract it atomically
# ---------------------------------------------------------------------------------------------

def fetch(
    archive: str | Path | None = None,
    root: str | Path | None = None,
    *,
    url: str = URL,
    quiet: bool = False,
) -> Path:
    """Put the clothing photos in ``dataset_dir(root)``, verified; a no-op when they are there.

    The archive comes from ``archive`` when given, else from the shared local copy when there
    is one, else it is downloaded from ``url``. Before anything is written, fetch checks that
    it is an intact zip holding one top-level folder with the expected number of ``.jpg`` files
    per split and class. It extracts into a temporary folder next to the target and then moves
    the result into place in one step, so the target is either complete or absent.

    Args:
        archive: path to a local copy of the zip archive.
        root: the data root; ``None`` means ``data_root()``.
        url: where to download the archive from when there is no local copy.
        quiet: print nothing but errors.

    Returns:
        The dataset folder, holding ``train/``, ``validation/`` and ``test/``.

    Raises:
        FetchError: the archive is missing, not a zip, truncated, lacks files, holds anything
            but the dataset's tree (duplicates, other paths, too many entries, more than
            ``_MAX_UNCOMPRESSED`` bytes or a zip-bomb compression ratio: all checked before a
            byte is extracted), the download failed, the data root is not writable or the disk
            is full. Nothing new is left under the data root.
    """
    target = dataset_dir(root)
    _remove_stale_work_dirs(target.parent)  # on every run: a killed fetch must not leave 60 MB forever
    if (target / _MARKER).is_file():
        _say(f"Dataset already fetched at {target} (delete that folder to fetch again).", quiet)
        return target
    if target.exists():
        raise FetchError(
            f"{target} exists but is incomplete (no {_MARKER} marker).\n"
            f"  Delete it and run fetch again."
        )
    made_root = not target.parent.exists()
    try:
        work = _make_work_dir(target.parent)
    except OSError as err:  # a read-only or foreign data root: say so, and how to choose another
        raise FetchError(_os_error_message(err, target.parent)) from err
    try:
        source = _archive_to_use(archive, url, work, quiet)
        _verify_and_extract(source, target, work, quiet)
    except OSError as err:  # anything the helpers did not turn into a FetchError
        raise FetchError(_os_error_message(err, target.parent)) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if made_root and not target.exists():
            _remove_empty_dir(target.parent)
    _say(f"Fetched {sum(_expected_totals().values())} photos into {target}", quiet)
    return target


def _archive_to_use(archive: str | Path | None, url: str, work: Path, quiet: bool) -> Path:
    """The archive to extract: the one given, the shared copy, or a fresh download into ``work``."""
    if archive is not None:
        return _existing_file(Path(archive).expanduser(), "archive not found")
    shared = _shared_archive()
    if shared is not None:
        from_env = os.environ.get("FASHION_KIT_ARCHIVE")
        what = "$FASHION_KIT_ARCHIVE points to a missing file" if from_env else "archive not found"
        _say(f"Using the local archive {shared}", quiet)
        return _existing_file(shared, what)
    dest = work / f"{COMMIT}.zip"
    _download(url, dest, quiet)
    _say(f"SHA256 of the downloaded archive: {sha256_file(dest)} (pin it to detect changes)", quiet)
    return dest


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise FetchError(f"{what}: {path}\n  Check the path, or run fetch without --archive to download it.")
    if not path.is_file():
        raise FetchError(f"not a zip archive: {path} is a folder\n  Pass the .zip file itself with --archive.")
    return path


def _verify_and_extract(source: Path, target: Path, work: Path, quiet: bool) -> None:
    """Check the archive, extract it under ``work``, then move its folder to ``target``."""
    with _open_zip(source) as zf:
        top = _single_top_folder(zf, source)
        _check_entries(zf, top, source)
        _check_counts(zf, top, source)
        checks = "every expected photo present"
        if source.name == SHARED_ARCHIVE_NAME or source.stat().st_size == SHARED_ARCHIVE_SIZE:
            _check_sha256(source, SHARED_ARCHIVE_SHA256)
            checks += ", sha256 matches"
        _say(f"Verified {source.name}: {len(zf.infolist())} entries, {checks}.", quiet)
        staging = work / "extract"
        _extract_all(zf, source, staging, quiet)
    folder = staging / top
    manifest = {"source": str(source), "commit": COMMIT, "top_folder": top,
                "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "counts": EXPECTED_COUNTS}
    (folder / _MARKER).write_text(json.dumps(manifest, indent=1) + "\n")  # the last file written
    try:
        os.replace(folder, target)  # one atomic step: target is complete or absent
    except OSError:
        if not (target / _MARKER).is_file():  # another fetch may have finished first
            raise


def _open_zip(path: Path) -> zipfile.ZipFile:
    """Open ``path`` as a zip, telling a non-zip file apart from a truncated one."""
    corrupt = f"archive is truncated or corrupt: {path}; delete it and run fetch again"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            starts_like_zip = f.read(4) == b"PK\x03\x04"
        if starts_like_zip:
            raise FetchError(corrupt)
        raise FetchError(f"not a zip archive: {path}\n  Pass the .zip of clothing-dataset-small with --archive.")
    try:
        return zipfile.ZipFile(path)
    except UnicodeDecodeError as err:  # a ValueError too, but not a damaged file: a foreign archive
        raise FetchError(f"an entry name in {path} is marked UTF-8 but is not valid UTF-8: this is not the "
                         f"dataset's archive.\n  Use the archive of clothing-dataset-small as GitHub serves it, "
                         f"or run fetch without --archive to download it.") from err
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        raise FetchError(corrupt) from err


def _single_top_folder(zf: zipfile.ZipFile, path: Path) -> str:
    tops = sorted({name.split("/", 1)[0] for name in zf.namelist()})
    if len(tops) != 1 or not any(n.startswith(tops[0] + "/") for n in zf.namelist()):
        shown = ", ".join(tops[:5]) + (" ..." if len(tops) > 5 else "")
        raise FetchError(
            f"expected one top-level folder in {path}, found {len(tops)}: {shown}\n"
            f"  Use the archive of clothing-dataset-small as GitHub serves it (not re-zipped)."
        )
    return tops[0]


def _check_entries(zf: zipfile.ZipFile, top: str, path: Path) -> None:
    """Refuse, before extracting anything, an archive that is not exactly the dataset's tree.

    Allowed: ``top/``, ``top/LICENSE*``, ``top/README*``, ``top/<split>/``, ``top/<split>/<class>/``
    and ``top/<split>/<class>/<image>``, each name once; at most ``_MAX_ENTRIES`` entries,
    ``_MAX_ENTRY_BYTES`` per file and ``_MAX_UNCOMPRESSED`` in all, each file compressed at
    most ``_MAX_RATIO`` to 1 (the photos are JPEGs: the real archive's largest ratio is 2.5).
    The sizes are the ones the archive declares; zipfile never extracts more than that.
    """
    infos = zf.infolist()
    refuse = f"\n  Use the archive of clothing-dataset-small as GitHub serves it (commit {COMMIT[:7]})."
    if len(infos) > _MAX_ENTRIES:
        raise FetchError(f"{path} holds {len(infos)} entries; the dataset has about 3,800 and at most "
                         f"{_MAX_ENTRIES} are accepted.{refuse}")
    names = Counter(info.filename for info in infos)
    repeated = sorted(name for name, n in names.items() if n > 1)
    if repeated:
        raise FetchError(f"{path} holds {len(repeated)} duplicated entry name(s), e.g. {_shown(repeated[0])}: "
                         f"an extraction would silently keep only one of each.{refuse}")
    strange = [info.filename for info in infos if not _expected_entry(info, top)]
    if strange:
        raise FetchError(f"{path} holds {len(strange)} entries outside the dataset's tree "
                         f"(split/class/photo, LICENSE, README), e.g. {_shown(strange[0])}.{refuse}")
    total = sum(info.file_size for info in infos)
    if total > _MAX_UNCOMPRESSED:
        raise FetchError(f"{path} would unpack to {total / _MB:.0f} MB; the dataset is about 110 MB and at "
                         f"most {_MAX_UNCOMPRESSED / _MB:.0f} MB are accepted.{refuse}")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _MAX_ENTRY_BYTES or (info.file_size > 64 * 1024 and ratio > _MAX_RATIO):
            raise FetchError(f"{path}: {_shown(info.filename)} unpacks to {info.file_size / _MB:.1f} MB "
                             f"({ratio:.0f}x its compressed size); photos of the dataset are at most "
                             f"{_MAX_ENTRY_BYTES / _MB:.0f} MB and barely compress: refusing a zip bomb.{refuse}")


def _expected_entry(info: zipfile.ZipInfo, top: str) -> bool:
    """Whether one entry belongs to the dataset's tree (see :func:`_check_entries`)."""
    name = info.filename
    if not name.startswith(top + "/") or "\\" in name or any(ord(c) < 32 for c in name):
        return False
    parts = name[len(top) + 1:].split("/")
    if parts == [""]:
        return True  # the top folder itself
    if len(parts) == 1:
        return parts[0].split(".")[0] in ("LICENSE", "README") and not info.is_dir()
    if parts[0] not in SPLITS:
        return False
    if len(parts) == 2:
        return parts[1] == ""  # top/split/
    if parts[1] not in CLASSES_10:
        return False
    if len(parts) != 3:
        return False
    file = parts[2]
    if file == "":
        return True  # top/split/class/
    return file not in (".", "..") and not info.is_dir() and file.lower().endswith(IMG_EXTENSIONS)


def _shown(name: str) -> str:
    """An entry name fit for a message: printable, at most 80 characters."""
    name = "".join(c if c.isprintable() else "?" for c in name)
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _check_counts(zf: zipfile.ZipFile, top: str, path: Path) -> None:
    """Compare the ``.jpg`` files per (split, class) with EXPECTED_COUNTS; name every difference."""
    found = Counter()
    for name in zf.namelist():
        parts = name.split("/")  # top/split/class/file.jpg
        if len(parts) == 4 and parts[3].lower().endswith(".jpg"):
            found[parts[1], parts[2]] += 1
    problems = []
    for split, per_class in EXPECTED_COUNTS.items():
        for cls, want in per_class.items():
            got = found[split, cls]
            if got == 0:
                problems.append(f"{split}/{cls} is missing (expected {want} .jpg files)")
            elif got != want:
                problems.append(f"{split}/{cls} has {got} .jpg files, expected {want}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise FetchError(
            f"{path} does not hold the expected files: {'; '.join(problems[:3])}{more}\n"
            f"  Use the archive of commit {COMMIT[:7]}, or run fetch without --archive to download it."
        )


def _check_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise FetchError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}\n"
            f"  The file is corrupt or another version; copy it again or run fetch without --archive."
        )


def _extract_all(zf: zipfile.ZipFile, source: Path, staging: Path, quiet: bool) -> None:
    """Extract every entry into ``staging``; CRC errors and a full disk become FetchErrors."""
    needed = sum(info.file_size for info in zf.infolist())
    free = shutil.disk_usage(staging.parent).free
    if free < needed:
        raise FetchError(_disk_full_message("extracting", needed - free))
    try:
        for info in tqdm(zf.infolist(), desc="extract", unit="file", disable=quiet, leave=False):
            zf.extract(info, staging)  # zipfile checks each entry's CRC while reading it
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise FetchError(f"archive is truncated or corrupt: {source}; delete it and run fetch again") from err
    except OSError as err:
        if err.errno == errno.ENOSPC:
            shutil.rmtree(staging, ignore_errors=True)  # free what we took before measuring
            short = needed - shutil.disk_usage(staging.parent).free
            raise FetchError(_disk_full_message("extracting", short if short > 0 else needed)) from err
        raise


def _disk_full_message(doing: str, short_bytes: int) -> str:
    return f"disk full while {doing}: free {math.ceil(short_bytes / _MB)} MB and retry"


def _download(url: str, dest: Path, quiet: bool) -> None:
    """Download ``url`` to ``dest`` in chunks, retrying 3 times with a growing wait."""
    for attempt, wait in enumerate((*_RETRY_WAITS, None), start=1):
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=quiet) as bar:
                    for chunk in iter(lambda: response.read(_MB), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            return
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            permanent = isinstance(err, urllib.error.HTTPError) and err.code in (403, 404, 410)
            if wait is None or permanent:
                raise FetchError(_no_download_message(url, err)) from err
            _say(f"Download attempt {attempt} failed ({_reason(err)}); retrying in {wait:.0f} s", quiet)
            time.sleep(wait)


def _no_download_message(url: str, err: Exception) -> str:
    return (
        f"could not download {url} ({_reason(err)}).\n"
        f"  No internet? Copy {SHARED_ARCHIVE_NAME} to this machine and run: "
        f"python -m helper_utils.data fetch --archive PATH/TO/{SHARED_ARCHIVE_NAME}"
    )


def _reason(err: Exception) -> str:
    return str(getattr(err, "reason", None) or err)


def _os_error_message(err: OSError, where: Path) -> str:
    if err.errno == errno.ENOSPC:
        return _disk_full_message("fetching", _FETCH_NEEDS_MB * _MB)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write to {where} ({err.strerror or 'permission denied'}).\n  Make it writable, or fetch "
                f"elsewhere: python -m helper_utils.data fetch --root DIR (then set $FASHION_KIT_DATA=DIR).")
    return f"could not fetch into {where}: {err.strerror or err}"


def _make_work_dir(parent: Path) -> Path:
    """A fresh temporary folder inside ``parent`` (same filesystem, so the final move is atomic).

    Its first file, ``owner.json``, names the process and machine that made it, so that a later
    fetch can tell a folder left by a killed fetch from one still in use.
    """
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=parent))
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    (work / _OWNER_FILE).write_text(json.dumps(owner))
    return work


def _remove_stale_work_dirs(parent: Path) -> None:
    """Delete the ``.fetch-*`` folders of fetches that died (their process is gone); never a live one.

    Only folders that look like ours are touched: a real directory (not a link) named
    ``.fetch-*``. With an owner file, stale means the owner process no longer runs on this
    machine; without one (a fetch killed in its first instant, or an older kit), or when it
    was made on another machine, it means older than ``_STALE_AFTER_S``.
    """
    try:
        candidates = [p for p in parent.glob(".fetch-*") if p.is_dir() and not p.is_symlink()]
    except OSError:
        return
    for work in candidates:
        try:
            if _is_stale(work):
                shutil.rmtree(work, ignore_errors=True)
        except OSError:  # a read-only root or a folder that vanished meanwhile: not our problem here
            continue


def _is_stale(work: Path) -> bool:
    try:
        owner = json.loads((work / _OWNER_FILE).read_text())
        pid, host, started = int(owner["pid"]), str(owner["host"]), float(owner["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return time.time() - work.stat().st_mtime > _STALE_AFTER_S
    if host == socket.gethostname() and pid != os.getpid():
        return not _process_alive(pid)
    return time.time() - started > _STALE_AFTER_S


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove_empty_dir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _expected_totals(classes: Sequence[str] | None = None) -> dict[str, int]:
    """Expected number of photos per split, over ``classes`` (default: all of them)."""
    return {split: sum(n for cls, n in per_class.items() if classes is None or cls in classes)
            for split, per_class in EXPECTED_COUNTS.items()}


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# ClothingDataset: one split, decoded once, kept in memory (and on disk) as a uint8 array
# ---------------------------------------------------------------------------------------------

class ClothingDataset(Dataset):
    """The photos of one split, resized once and kept in memory; works like torchvision's ImageFolder.

    It reads the folders that ``fetch`` writes::

        <root>/clothing-dataset-small/train/dress/0a2b...jpg
                                            /dress/0b7c...jpg
                                            /hat/1c3d...jpg
                                      /validation/...
                                      /test/...

    that is ``root/split/class_x/xxx.jpg``. Every photo is decoded once by
    :func:`helper_utils.images.decode_image` (the decoder queries go through too: EXIF
    orientation, 16-bit grey scaled, transparency on white), then resized to
    ``image_size x image_size`` (bilinear with antialiasing). The result is one
    uint8 array, saved under ``<root>/cache/`` so the next run loads it in a fraction of a
    second. A file that cannot be read is skipped with a warning naming it.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        classes: ``"seven"`` (the course's classes), ``"all"`` / ``"ten"``, or a list of names.
        transform: applied to each PIL image in ``__getitem__`` (e.g. ``val_transform``).
        root: the data root; ``None`` means ``data_root()``.
        image_size: side of the square images in pixels.
        cache: read and write the decoded images under ``<root>/cache/``.

    Attributes:
        classes (list[str]): class names, sorted.
        class_to_idx (dict[str, int]): class name -> label.
        samples (list[tuple[str, int]]): (path, label) of every photo kept.
        targets (list[int]): the label of every photo, in order (no decoding needed).
        root (str): the split folder, as in ImageFolder.
        images (np.ndarray): all photos, uint8, shape (N, image_size, image_size, 3).
        skipped (list[str]): paths of the files that could not be read.

    Raises:
        DatasetNotFoundError: the split folder, or a class folder in it, is missing.
        ValueError: ``split``, ``classes`` or ``image_size`` is not an allowed value.
    """

    def __init__(
        self,
        split: str = "train",
        classes: str | Sequence[str] = "seven",
        transform: Callable | None = None,
        root: str | Path | None = None,
        image_size: int = 64,
        cache: bool = True,
    ) -> None:
        self.split = _check_split(split)
        self.classes = _resolve_classes(classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.image_size = _check_image_size(image_size)
        self.transform = transform
        split_dir = _split_dir(root, self.split, self.classes)
        self.root = str(split_dir)
        found = _find_images(split_dir, self.class_to_idx)
        cache_file = _cache_file(root, self.split, self.classes, self.image_size, found) if cache else None
        self.images, kept, bad = _load_images(found, self.image_size, cache_file)
        self.samples = [found[i] for i in kept]
        self.targets = [label for _, label in self.samples]
        self.skipped = [path for path, _ in bad]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        """Returns ``(image, label)``: a PIL RGB image (or ``transform(image)``) and an int."""
        image = Image.fromarray(self.images[index])  # cheap: no file access, no decoding
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    @property
    def imgs(self) -> list[tuple[str, int]]:
        """Same as ``samples`` (ImageFolder keeps this older name too)."""
        return self.samples

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All photos at once, for fast batched training on the GPU.

        Returns:
            images: uint8 tensor (N, 3, S, S), channels first like ``ToTensor`` (not scaled).
            targets: int64 tensor (N,).
        """
        images = torch.from_numpy(self.images).permute(0, 3, 1, 2).contiguous()  # (N,S,S,3) -> (N,3,S,S)
        return images, torch.tensor(self.targets, dtype=torch.long)

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {self.split}",
                 f"    Classes: {self.classes}", f"    Image size: {self.image_size}x{self.image_size}"]
        if self.skipped:
            lines.append(f"    Skipped (unreadable): {len(self.skipped)}")
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}".replace("\n", "\n    "))
        return "\n".join(lines)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


def _resolve_classes(classes: str | Sequence[str]) -> list[str]:
    """``"seven"`` -> CLASSES_7, ``"all"``/``"ten"`` -> CLASSES_10, a list -> itself, sorted."""
    named = {"seven": CLASSES_7, "all": CLASSES_10, "ten": CLASSES_10}
    if isinstance(classes, str):
        if classes not in named:
            raise ValueError(f"classes must be one of {sorted(named)} or a list of names from "
                             f"{CLASSES_10}, got {classes!r}")
        return list(named[classes])
    names = list(classes)
    unknown = [name for name in names if name not in CLASSES_10]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct names from {CLASSES_10}, got {names!r}")
    return sorted(names)


def _check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (e.g. 64), got {image_size!r}")
    return image_size


def _split_dir(root: str | Path | None, split: str, classes: Sequence[str]) -> Path:
    """The folder of one split; raises DatasetNotFoundError with the fix when it is missing."""
    split_dir = dataset_dir(root) / split
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"The {split!r} split is not at {split_dir}.\n  To get it, {FETCH_HINT}.")
    missing = [name for name in classes if not (split_dir / name).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"{split_dir} has no folder for {missing}.\n"
            f"  The data looks incomplete: delete {split_dir.parent} and fetch again ({FETCH_HINT})."
        )
    return split_dir


def _find_images(split_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) of every image file, ordered exactly as ImageFolder orders them."""
    samples = []
    for name, label in sorted(class_to_idx.items(), key=lambda kv: kv[1]):
        for folder, _, files in sorted(os.walk(split_dir / name, followlinks=True)):
            for file in sorted(files):
                if file.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(folder, file), label))
    return samples


def _decode(path: str, size: int) -> np.ndarray:
    """Read one image as RGB, resized to (size, size): uint8 array (size, size, 3).

    Decoded by :func:`helper_utils.images.decode_image`, the decoder queries go through too, so a
    photo gives the same pixels in the catalog and as a query.
    """
    image = decode_image(path).resize((size, size), Image.BILINEAR)  # PIL antialiases when shrinking
    return np.asarray(image, dtype=np.uint8)


def _load_images(found: list[tuple[str, int]], size: int, cache_file: Path | None):
    """Images of ``found`` from the cache, else decoded (and cached). Returns (images, kept, bad)."""
    cached = _read_cache(cache_file, len(found), size) if cache_file else None
    if cached is not None:
        images, kept, bad = cached
    else:
        images, kept, bad = _decode_all(found, size)
        if cache_file:
            _write_cache(cache_file, images, kept, bad)
    for path, reason in bad:
        warnings.warn(f"skipped unreadable image {path}: {reason}", stacklevel=3)
    return images, kept, bad


def _decode_all(found: list[tuple[str, int]], size: int):
    images = np.empty((len(found), size, size, 3), dtype=np.uint8)  # (N, S, S, 3)
    ok = np.ones(len(found), dtype=bool)
    bad = []
    for i, (path, _) in enumerate(tqdm(found, desc="decode", unit="img", disable=len(found) < 100)):
        try:
            images[i] = _decode(path, size)
        except Exception as err:  # truncated, corrupt, not an image: report it, never crash
            ok[i] = False
            bad.append((path, f"{type(err).__name__}: {err}"))
    kept = np.flatnonzero(ok)
    return (images if ok.all() else images[kept]), kept.tolist(), bad


def _cache_file(root, split: str, classes: list[str], size: int, found: list[tuple[str, int]]) -> Path:
    """The cache path: names the split, classes and size, plus a fingerprint of every file."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}|{classes}|{size}|bilinear".encode())
    split_dir = dataset_dir(root) / split
    for path, label in found:
        stat = os.stat(path)  # a renamed, added, removed or re-written file changes the key
        name = os.path.relpath(path, split_dir)
        digest.update(f"{name}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    tag = {tuple(CLASSES_7): "seven", tuple(CLASSES_10): "ten"}.get(tuple(classes))
    tag = tag or "custom" + hashlib.sha256(",".join(classes).encode()).hexdigest()[:8]
    cache_dir = (Path(root).expanduser().resolve() if root else data_root()) / "cache"
    return cache_dir / f"{split}-{tag}-{size}px-{digest.hexdigest()[:16]}.npz"


def _read_cache(cache_file: Path, n_found: int, size: int):
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as saved:
            images, kept = saved["images"], saved["kept"].tolist()
            bad = list(zip(saved["bad_paths"].tolist(), saved["bad_reasons"].tolist()))
        if images.shape != (len(kept), size, size, 3) or len(kept) + len(bad) != n_found:
            raise ValueError(f"unexpected shape {images.shape}")
        return images, kept, bad
    except Exception as err:  # a damaged cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache {cache_file} ({err}); decoding the images again",
                      stacklevel=4)
        return None


def _write_cache(cache_file: Path, images: np.ndarray, kept: list[int], bad: list[tuple[str, str]]) -> None:
    """Save to a temporary file, then rename: readers never see half a cache."""
    try:
        with atomic_path(cache_file, mode=0o644) as tmp, open(tmp, "wb") as f:  # as readable as the data
            np.savez(f, images=images, kept=np.asarray(kept, dtype=np.int64),
                     bad_paths=np.asarray([p for p, _ in bad], dtype=str),
                     bad_reasons=np.asarray([r for _, r in bad], dtype=str))
        prefix = cache_file.name.rsplit("-", 1)[0] + "-"
        for old in cache_file.parent.glob(prefix + "*.npz"):  # caches of an older version of the folder
            if old != cache_file:
                old.unlink(missing_ok=True)
    except OSError as err:  # read-only or full disk: keep going without a cache
        warnings.warn(f"could not write the image cache {cache_file} ({err}); continuing without it",
                      stacklevel=4)


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------

def make_loader(
    dataset: Dataset,
    batch_size: int = 64,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset``; with ``seed`` the shuffling order repeats run after run.

    Args:
        dataset: any map-style dataset, e.g. a ``ClothingDataset``.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (use it for training only).
        num_workers: worker processes; 0 loads in the main process (best for in-memory data).
        seed: seeds the loader's own random generator (shuffling, worker seeds).
        drop_last: drop the last, smaller batch.

    Returns:
        The DataLoader.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,  # keep workers alive between epochs
    )


# ---------------------------------------------------------------------------------------------
# Command line: python -m helper_utils.data fetch | cache
# ---------------------------------------------------------------------------------------------

def _build_caches(classes: str, image_size: int, root: Path | None) -> None:
    """Decode every split once so later runs load from the cache."""
    for split in SPLITS:
        start = time.perf_counter()
        dataset = ClothingDataset(split, classes=classes, root=root, image_size=image_size)
        print(f"{split}: {len(dataset)} images of {len(dataset.classes)} classes at "
              f"{image_size}x{image_size} ready in {time.perf_counter() - start:.1f} s", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helper_utils.data",
                                     description="Fetch the clothing dataset and build its caches.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download or unpack the verified dataset (no-op if present)")
    fetch_cmd.add_argument("--archive", type=Path, help=f"a local copy of the archive ({SHARED_ARCHIVE_NAME})")
    fetch_cmd.add_argument("--root", type=Path, help="data root (default: $FASHION_KIT_DATA or <repo>/data)")
    fetch_cmd.add_argument("--url", default=URL, help="where to download from when there is no local copy")
    fetch_cmd.add_argument("--quiet", action="store_true", help="print errors only")
    cache_cmd = commands.add_parser("cache", help="decode every split once and write the image caches")
    cache_cmd.add_argument("--classes", default="seven", choices=["seven", "all"])
    cache_cmd.add_argument("--image-size", type=int, default=64)
    cache_cmd.add_argument("--root", type=Path, help="data root (default: $FASHION_KIT_DATA or <repo>/data)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on failure, 130 on Ctrl-C)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(args.archive, args.root, url=args.url, quiet=args.quiet)
        else:
            _build_caches(args.classes, args.image_size, args.root)
    except (FetchError, DatasetNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left; run the command again", file=sys.stderr)
        return 130
    except Exception as err:  # unexpected, but the user still gets one line, not a traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
