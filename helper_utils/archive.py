"""The dataset's pinned archive: what it must hold, and fetching it verified and atomically.

``fetch()`` takes the archive from a local copy or downloads the pinned commit, checks it
before a byte is extracted (one top folder, the dataset's tree and nothing else, sizes that
cannot be a zip bomb, exactly the pinned commit's files), extracts it into a temporary
folder beside the target and moves the result into place in one step: the dataset folder is
either complete or absent, whatever happens (a cut download, a full disk, Ctrl-C).

From a terminal, in the kit's folder::

    make data                            # or: .venv/bin/python -m helper_utils.data fetch
    make data ARCHIVE=path/to/clothing-dataset-small-master.zip     # no internet: a local copy

``$FASHION_KIT_ARCHIVE`` names a local copy of the archive for machines without internet, and
``$FASHION_KIT_DATA`` the data root (default ``<repo>/data``).
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from helper_utils import paths
from helper_utils.files import sha256_file, shown_path
from helper_utils.progress import tqdm

__all__ = [
    "CLASSES_10",
    "SPLITS",
    "COMMIT",
    "URL",
    "SHARED_ARCHIVE_NAME",
    "DATASET_FOLDER",
    "PINNED_FILES",
    "EXPECTED_COUNTS",
    "IMG_EXTENSIONS",
    "FetchError",
    "dataset_dir",
    "fetch",
    "listing",
    "pinned_files",
]

# ---------------------------------------------------------------------------------------------
# The dataset: clothing-dataset-small (CC0), pinned to one commit so every run sees the same files
# ---------------------------------------------------------------------------------------------

CLASSES_10 = ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt"]  # sorted, as ImageFolder sorts them
SPLITS = ("train", "validation", "test")

COMMIT = "11961516512414bf9f6c150a832cfd21b54a6b54"
URL = f"https://github.com/alexeygrigorev/clothing-dataset-small/archive/{COMMIT}.zip"

# The copy of the archive kept for offline machines and CI (../shared/datasets/ next to the repo).
SHARED_ARCHIVE_NAME = "clothing-dataset-small-master.zip"
SHARED_ARCHIVE_SIZE = 106_234_428  # bytes
_SHARED_ARCHIVE_SHA256 = "e0bbb94f64dd058921c3d94829efc2ed6737197a3b3de448c7091963a4a11d3b"

DATASET_FOLDER = "clothing-dataset-small"  # the folder fetch creates under data_root()

# Every file of the pinned commit's archive, with its size and CRC-32 (from the zip's central directory, written by
# `python -m tools.pin_dataset ARCHIVE`): fetch accepts exactly these files, no other and none missing.
PINNED_FILES = Path(__file__).with_name("dataset_files.txt")

# Number of .jpg files per split and class in the pinned archive (the README's table; the pinned list has the files).
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

# What the messages tell a learner to type, in a fresh shell in the kit's folder: `make data` runs the kit's own
# Python (.venv/bin/python), where a plain `python` may be another one, without torch.
OFFLINE_COMMAND = f"make data ARCHIVE=PATH/TO/{SHARED_ARCHIVE_NAME}"
ELSEWHERE_COMMAND = "FASHION_KIT_DATA=DIR make data"


class FetchError(RuntimeError):
    """Fetching the dataset failed; the message says what was wrong and what to do next."""


# ---------------------------------------------------------------------------------------------
# Where the photos go
# ---------------------------------------------------------------------------------------------

def dataset_dir(root: str | Path | None = None) -> Path:
    """The folder ``fetch`` writes the photos to: ``<root>/clothing-dataset-small``.

    Args:
        root: the data root; ``None`` means ``paths.data_root()`` (``$FASHION_KIT_DATA`` or ``<repo>/data``).
    """
    return Path(root).expanduser().resolve() / DATASET_FOLDER if root else paths.data_root() / DATASET_FOLDER


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
    it is an intact zip holding one top-level folder with exactly the pinned commit's files
    (:func:`pinned_files`: paths, sizes and CRC-32s), no file more and none less. It extracts
    into a temporary folder next to the target and then moves the result into place in one
    step, so the target is either complete or absent.

    Args:
        archive: path to a local copy of the zip archive.
        root: the data root; ``None`` means ``paths.data_root()`` (``$FASHION_KIT_DATA`` or ``<repo>/data``).
        url: where to download the archive from when there is no local copy.
        quiet: print nothing but errors.

    Returns:
        The dataset folder, holding ``train/``, ``validation/`` and ``test/``.

    Raises:
        FetchError: the archive is missing, not a zip, truncated, lacks a pinned file or holds
            one more or one changed, holds anything but the dataset's tree (duplicates, other paths, too many entries, more than
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
        raise FetchError(f"{what}: {path}\n  Check the path, or fetch without naming an archive to download it.")
    if not path.is_file():
        raise FetchError(f"not a zip archive: {path} is a folder\n  Name the .zip file itself as the archive.")
    return path


def _verify_and_extract(source: Path, target: Path, work: Path, quiet: bool) -> None:
    """Check the archive, extract it under ``work``, then move its folder to ``target``."""
    with _open_zip(source) as zf:
        top = _single_top_folder(zf, source)
        _check_entries(zf, top, source)
        _check_pinned(zf, top, source)
        checks = "exactly the pinned commit's files"
        if source.name == SHARED_ARCHIVE_NAME or source.stat().st_size == SHARED_ARCHIVE_SIZE:
            _check_sha256(source, _SHARED_ARCHIVE_SHA256)
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
        raise FetchError(f"not a zip archive: {path}\n  Name the .zip of clothing-dataset-small as the archive.")
    try:
        return zipfile.ZipFile(path)
    except UnicodeDecodeError as err:  # a ValueError too, but not a damaged file: a foreign archive
        raise FetchError(f"an entry name in {path} is marked UTF-8 but is not valid UTF-8: this is not the "
                         f"dataset's archive.\n  Use the archive of clothing-dataset-small as GitHub serves it, "
                         f"or fetch without naming an archive to download it.") from err
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
    """An entry name fit for a message: quoted, control characters and non-UTF-8 bytes escaped, at most 80 characters."""
    name = shown_path(name)
    return repr(name if len(name) <= 80 else name[:77] + "...")


def listing(zf: zipfile.ZipFile, top: str) -> dict[str, tuple[int, int]]:
    """Every file under ``top/`` in the archive: path relative to ``top`` -> ``(size, CRC-32)``.

    Read from the zip's central directory, without extracting: the same paths, sizes and
    checksums in the archive GitHub serves for the commit and in a copy of it, whatever its
    top folder is called. It is what :func:`pinned_files` holds for the pinned commit.
    """
    return {info.filename[len(top) + 1:]: (info.file_size, info.CRC)
            for info in zf.infolist() if not info.is_dir() and info.filename.startswith(top + "/")}


@functools.lru_cache(maxsize=1)
def pinned_files() -> dict[str, tuple[int, int]]:
    """The files of the pinned commit's archive (``PINNED_FILES``): relative path -> ``(size, CRC-32)``."""
    files = {}
    for line in PINNED_FILES.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, size, crc = line.split("\t")
            files[name] = (int(size), int(crc, 16))
    return files


def _check_pinned(zf: zipfile.ZipFile, top: str, path: Path) -> None:
    """The archive must hold exactly the pinned commit's files: name every extra, missing or changed one.

    zipfile checks every file's CRC-32 against the central directory while extracting it, and
    the central directory's are the pinned ones: a photo whose bytes differ cannot get through.
    """
    found, pinned = listing(zf, top), pinned_files()
    problems = [f"an extra file {_shown(name)}" for name in sorted(set(found) - set(pinned))]
    problems += [f"{_shown(name)} is missing" for name in sorted(set(pinned) - set(found))]
    problems += [f"{_shown(name)} differs from the pinned file (size or CRC-32)"
                 for name in sorted(set(found) & set(pinned)) if found[name] != pinned[name]]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise FetchError(
            f"{path} does not hold exactly the files of commit {COMMIT[:7]}: {'; '.join(problems[:3])}{more}.\n"
            f"  Use the archive of clothing-dataset-small as GitHub serves it, or fetch without naming an archive "
            f"to download it."
        )


def _check_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise FetchError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}\n"
            f"  The file is corrupt or another version; copy it again, or fetch without naming an archive."
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
        f"  No internet? Copy {SHARED_ARCHIVE_NAME} to this machine, then run in the kit's folder: "
        f"{OFFLINE_COMMAND}"
    )


def _reason(err: Exception) -> str:
    return str(getattr(err, "reason", None) or err)


def _os_error_message(err: OSError, where: Path) -> str:
    if err.errno == errno.ENOSPC:
        return _disk_full_message("fetching", _FETCH_NEEDS_MB * _MB)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write to {where} ({err.strerror or 'permission denied'}).\n  Make it writable, or fetch "
                f"elsewhere: {ELSEWHERE_COMMAND} (and keep $FASHION_KIT_DATA=DIR set for the notebooks).")
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

