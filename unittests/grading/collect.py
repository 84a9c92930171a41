"""What learners hand in, as they really hand it in: which file is whose notebook, and what is ignored.

A submissions folder holds, for each learner, any of:

- a folder named after the learner (``ann/``), with the notebooks in it or one folder below it
  (``ann/notebooks/``), and maybe a ``.zip`` of them (``ann/work.zip``);
- a ``.zip`` named after the learner (``ann.zip``);
- a notebook whose name starts with the learner's (``ann_02_inverted_residual_block.ipynb``, as
  an LMS's bulk download names them).

A notebook is recognised under the names learners' tools give a copy: Colab's ``Copy of
02_inverted_residual_block.ipynb``, Jupyter's ``02_inverted_residual_block-Copy1.ipynb``, a
browser's ``02_inverted_residual_block (1).ipynb``. When a learner hands in two candidates for
one notebook, the newest (modification time) is graded, the one with the exact name first when
they are as new, and a warning names both. Everything the grader does not use (a notebook of no
graded name, a folder deeper than one level, a file it cannot take) gets a warning line: nothing
a learner handed in is dropped silently.

A zip is extracted into a private folder, safely: a member with an absolute path or ``..``, a
symbolic link, more than ``MAX_ENTRIES`` members or more than the submission's size limit
(counted while extracting, whatever the zip claims) refuses the whole zip, and the learner's
notebooks from it are graded ``error`` with the reason.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from unittests.grading.submission import MAX_ENTRIES, display_name

__all__ = ["Collection", "notebook_name", "survey", "resolve", "read_roster", "extract_zip"]

_COPY_OF = re.compile(r"^(copy of )+", re.IGNORECASE)  # Colab, once per copy of a copy
_DUPLICATE = re.compile(r"(\s*\(\d+\)|-Copy\d*| - Copy( \(\d+\))?)+$")  # browser, Jupyter, Windows
IGNORED_NAMES = {".ipynb_checkpoints", "__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}  # tools' droppings


def notebook_name(file_name: str, known: list[str]) -> tuple[str | None, bool]:
    """The graded notebook a file name is a copy of, and whether the name is exact; ``(None, False)`` if none.

    >>> notebook_name("Copy of 02_inverted_residual_block (1).ipynb", ["02_inverted_residual_block"])
    ('02_inverted_residual_block', False)
    """
    if not file_name.lower().endswith(".ipynb"):
        return None, False
    stem = file_name[: -len(".ipynb")]
    if stem in known:
        return stem, True
    bare = _DUPLICATE.sub("", _COPY_OF.sub("", stem.strip())).strip()
    return (bare, False) if bare in known else (None, False)


@dataclass
class _HandIn:
    """Where one learner's work is: folders and zips, as found (nothing extracted yet)."""

    name: str  # the learner's name as the file system gives it (a folder's, a zip's, a file name's prefix)
    folders: list[Path] = field(default_factory=list)
    zips: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # notebooks straight in submissions/, named after the learner
    refused: str = ""  # why nothing of it can be read (a folder that is a symbolic link)
    on_roster: bool = False


@dataclass
class Collection:
    """Every learner of a class, and the lines to warn about what is not graded."""

    handins: dict[str, _HandIn]
    warnings: list[str]

    @property
    def names(self) -> list[str]:
        return sorted(self.handins)


def _warn_name(path: Path, root: Path) -> str:
    try:
        return display_name(str(path.relative_to(root)))
    except ValueError:
        return display_name(str(path))


def survey(submissions: Path, known: list[str], roster: list[str] | None = None) -> Collection:
    """Every learner in ``submissions`` (and on ``roster``), with where their work is; warns about the rest."""
    handins: dict[str, _HandIn] = {}
    warnings: list[str] = []

    def handin(name: str) -> _HandIn:
        return handins.setdefault(name, _HandIn(name))

    for entry in sorted(os.scandir(submissions), key=lambda e: e.name):
        path = Path(entry.path)
        shown = display_name(entry.name)
        if entry.name.startswith(".") or entry.name in IGNORED_NAMES:
            warnings.append(f"ignored {shown}: a hidden or system file")
        elif entry.is_symlink():
            if entry.name.lower().endswith((".zip", ".ipynb")) or not entry.is_dir():
                warnings.append(f"ignored {shown}: a symbolic link (hand in the file itself)")
            else:
                handin(entry.name).refused = "the learner's folder is a symbolic link: hand in a plain folder"
        elif entry.is_dir():
            handin(entry.name).folders.append(path)
        elif not entry.is_file():
            warnings.append(f"ignored {shown}: not a regular file")
        elif entry.name.lower().endswith(".zip"):
            handin(entry.name[:-4]).zips.append(path)
        elif entry.name.lower().endswith(".ipynb"):
            learner = _owner(entry.name, known)
            if learner:
                handin(learner).files.append(path)
            else:
                warnings.append(f"ignored {shown}: a notebook straight in the submissions folder whose name says "
                                "no learner; put it in a folder named after the learner")
        else:
            warnings.append(f"ignored {shown}: not a learner's folder, .zip or notebook")
    for name in roster or []:
        handin(name).on_roster = True
    if roster is not None:
        for name in sorted(set(handins) - set(roster)):
            warnings.append(f"{display_name(name)} is not on the roster: graded anyway")
    return Collection(handins, warnings)


def _owner(file_name: str, known: list[str]) -> str:
    """``ann`` for ``ann_02_inverted_residual_block.ipynb`` (an LMS's bulk download); ``""`` when no learner is named."""
    stem = file_name[: -len(".ipynb")]
    for notebook in known:
        at = stem.find(notebook)
        if at > 0:
            learner = stem[:at].rstrip(" _-")
            if learner and notebook_name(_COPY_OF.sub("", stem[at:]) + ".ipynb", known)[0] == notebook:
                return learner
    return ""


def handed_in_notebooks(handin: _HandIn, known: list[str]) -> set[str]:
    """The graded notebooks a hand-in holds a candidate for, from names only (zips listed, not extracted)."""
    found = set()
    for folder in handin.folders:
        for path in _walk(folder, []):
            found.add(notebook_name(path.name, known)[0])
    for path in handin.files:
        found.add(notebook_name(path.name[len(handin.name):].lstrip(" _-"), known)[0])
    for archive in handin.zips + [p for f in handin.folders for p in _zips_in(f)]:
        try:
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    parts = PurePosixPath(member).parts
                    if 1 <= len(parts) <= 3:
                        found.add(notebook_name(parts[-1], known)[0])
        except (OSError, zipfile.BadZipFile, ValueError):
            continue
    found.discard(None)
    return found


def _zips_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.lower().endswith(".zip") and not p.is_symlink()
                  and p.is_file()) if folder.is_dir() and not folder.is_symlink() else []


def _walk(folder: Path, warnings: list[str], root: Path | None = None, depth: int = 0,
          zips_taken: bool = True) -> list[Path]:
    """The ``.ipynb`` files of ``folder`` and of its subfolders one level down; warns about what lies deeper."""
    root = root or folder.parent
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        warnings.append(f"ignored {_warn_name(folder, root)}: cannot be read ({e.strerror})")
        return found
    for entry in entries:
        path = Path(entry.path)
        if entry.name in IGNORED_NAMES or entry.name.startswith("."):
            if entry.name.lower().endswith(".ipynb") or entry.is_dir(follow_symlinks=False):
                warnings.append(f"ignored {_warn_name(path, root)}: a hidden or tool's folder or file")
            continue
        if entry.is_dir(follow_symlinks=False):
            if depth == 0:
                found += _walk(path, warnings, root, depth + 1, zips_taken)
            elif _has_notebook(path):
                warnings.append(f"ignored {_warn_name(path, root)}/: notebooks more than one folder down")
        elif entry.name.lower().endswith(".ipynb"):
            found.append(path)  # a symbolic link too: staging refuses it, and the feedback says why
        elif entry.name.lower().endswith(".zip") and (depth or not zips_taken):
            warnings.append(f"ignored {_warn_name(path, root)}: a zip inside a zip or one folder down "
                            "(hand in one zip, or the notebooks)")
        elif entry.is_symlink() and entry.is_dir():
            warnings.append(f"ignored {_warn_name(path, root)}: a symbolic link to a folder")
    return found


def _has_notebook(folder: Path) -> bool:
    return any(name.lower().endswith(".ipynb") for _, _, names in os.walk(folder) for name in names)


@dataclass
class _Resolved:
    """One learner's notebooks, ready to stage: ``{notebook: path}``, and why a notebook could not be taken."""

    paths: dict[str, Path]
    refused: dict[str, str]  # notebook -> why (a refused zip it came from, a folder that is a link)
    warnings: list[str]


def resolve(handin: _HandIn, notebooks: list[str], known: list[str], unzip_to: Path, max_mb: int,
            submissions: Path) -> _Resolved:
    """Choose the file graded for each of ``notebooks``; extracts the learner's zips into ``unzip_to``."""
    warnings: list[str] = []
    who = display_name(handin.name)
    if handin.refused:
        return _Resolved({}, {n: handin.refused for n in notebooks}, warnings)
    candidates: list[Path] = []
    for folder in handin.folders:
        candidates += _walk(folder, warnings, submissions)
    candidates += handin.files
    archives = handin.zips + [p for f in handin.folders for p in _zips_in(f)]
    refused_zips = []
    for index, archive in enumerate(archives):
        target = unzip_to / f"zip{index}"
        try:
            extract_zip(archive, target, max_mb)
        except ValueError as e:
            refused_zips.append(f"{archive.name}: {e}")
            warnings.append(f"refused {_warn_name(archive, submissions)}: {e}")
            continue
        candidates += _walk(target, warnings, unzip_to, zips_taken=False)
    by_notebook: dict[str, list[tuple[Path, bool]]] = {}
    for path in candidates:
        name = path.name[len(handin.name):].lstrip(" _-") if path in handin.files else path.name
        notebook, exact = notebook_name(name, known)
        if notebook is None:
            warnings.append(f"ignored {_shown(path, submissions, unzip_to, who)}: no graded notebook has this name "
                            f"(keep the name the kit gave it, e.g. {known[0]}.ipynb)")
        elif notebook in notebooks:
            by_notebook.setdefault(notebook, []).append((path, exact))
    if not candidates and not refused_zips and (handin.folders or handin.zips):
        warnings.append(f"{who}: handed in no notebook (nothing ending in .ipynb in the folder, one folder down "
                        "or in a zip)")
    paths = {}
    for notebook, found in by_notebook.items():
        ranked = sorted(found, key=lambda f: (-_mtime(f[0]), not f[1], str(f[0])))
        paths[notebook] = ranked[0][0]
        if len(ranked) > 1:
            others = ", ".join(_shown(p, submissions, unzip_to, who) for p, _ in ranked[1:])
            warnings.append(f"{who}: {len(ranked)} files for {notebook}: graded "
                            f"{_shown(ranked[0][0], submissions, unzip_to, who)} (the newest), ignored {others}")
    refused = {n: "refused: " + "; ".join(refused_zips) for n in notebooks if n not in paths and refused_zips}
    return _Resolved(paths, refused, warnings)


def _shown(path: Path, submissions: Path, unzip_to: Path, who: str) -> str:
    try:
        return display_name(str(path.relative_to(submissions)))
    except ValueError:
        pass
    try:
        return f"{who}'s zip: " + display_name(str(path.relative_to(unzip_to)).split(os.sep, 1)[-1])
    except ValueError:
        return display_name(str(path))


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def extract_zip(archive: Path, target: Path, max_mb: int) -> Path:
    """Extract ``archive`` into ``target``, or refuse all of it (ValueError saying why) and leave nothing.

    Refused: a member with an absolute path, a drive or ``..``; a symbolic link or any member that
    is not a plain file or folder; more than ``MAX_ENTRIES`` members; more than ``max_mb``
    extracted, counted as it is written (a zip's own sizes can lie).
    """
    limit = max_mb * 2**20
    if archive.stat().st_size > limit:
        raise ValueError(f"the zip is larger than the {max_mb} MB a submission may be")
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            if len(members) > MAX_ENTRIES:
                raise ValueError(f"the zip holds more than {MAX_ENTRIES} files: zip the notebooks only")
            for info in members:
                name = info.filename
                parts = PurePosixPath(name.replace("\\", "/")).parts
                if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or not parts:
                    raise ValueError(f"the zip holds a path outside itself ({display_name(name)!r})")
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip's tool records no file type
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ValueError(f"the zip holds a symbolic link or special file ({display_name(name)!r}): "
                                     "zip the files themselves")
            if sum(i.file_size for i in members) > limit:
                raise ValueError(f"the zip would extract to more than the {max_mb} MB a submission may be")
            written = 0
            target.mkdir(parents=True, exist_ok=True)
            for info in members:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                destination = target.joinpath(*parts)
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as source, open(destination, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > limit:
                            raise ValueError(f"the zip extracts to more than the {max_mb} MB a submission may be")
                        sink.write(chunk)
                stamp = _zip_time(info)
                if stamp is not None:
                    os.utime(destination, (stamp, stamp))
    except ValueError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as e:
        shutil.rmtree(target, ignore_errors=True)
        raise ValueError(f"the zip cannot be read ({type(e).__name__}: {e})") from None
    return target


def _zip_time(info: zipfile.ZipInfo) -> float | None:
    import time

    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def read_roster(path: Path) -> list[str]:
    """The learners of a roster CSV: its ``learner`` column (other columns ignored), blank cells skipped."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "learner" not in columns:
            raise ValueError(f"roster {path}: no 'learner' column (columns: {reader.fieldnames})")
        key = (reader.fieldnames or [])[columns.index("learner")]
        names = [row[key].strip() for row in reader if (row.get(key) or "").strip()]
    for name in names:
        if "/" in name or name in (".", ".."):
            raise ValueError(f"roster {path}: {name!r} cannot be a learner's folder name")
    return list(dict.fromkeys(names))
