"""A class's submissions on disk: the learners, their names as the gradebook shows them, and safe copies.

Nothing from outside a submission may reach its kernel or its feedback, and no submission may
cost more disk than the grader allows. So a learner folder or notebook that is a symbolic link is
refused, links and special files inside a folder are not copied, and a folder whose files add up
to more than the limit (sparse files counted at their full size) is refused before anything is
copied. Folder names are taken as the file system gives them: any bytes, any length.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

__all__ = ["Refused", "learners", "display_name", "stage"]

MAX_ENTRIES = 10_000  # files and folders in one submission


class Refused(ValueError):
    """A submission the grader will not copy or read; the message says why, for the learner's feedback."""


def learners(submissions: Path) -> list[str]:
    """The learner folders in ``submissions`` (symbolic links included, to be refused), sorted."""
    names = []
    for entry in os.scandir(submissions):
        if not entry.name.startswith(".") and (entry.is_dir() or entry.is_symlink()):
            names.append(entry.name)
    return sorted(names)


def display_name(name: str) -> str:
    """``name`` as the gradebook shows it: undecodable bytes as ``\\xNN``, control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _size_and_entries(folder: Path) -> tuple[int, int]:
    total, entries = 0, 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            entries += 1
            if entries > MAX_ENTRIES:
                raise Refused(f"the folder holds more than {MAX_ENTRIES} files: hand in the notebooks only")
            info = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size  # the size it claims: a sparse file counts in full
    return total, entries


def stage(folder: Path, notebook: str, target: Path, max_mb: int, path: Path | None = None) -> Path:
    """Copy the learner's folder to ``target`` (plain files and folders only); returns the notebook's copy.

    ``path`` is the notebook handed in (default ``folder/<notebook>.ipynb``; a copy's name, such as
    ``Copy of <notebook>.ipynb``, is found by :mod:`unittests.grading.collect`); its folder is copied.

    Raises:
        Refused: the folder or the notebook is a symbolic link, the notebook is not a regular
            file, or the folder is larger than ``max_mb``.
        FileNotFoundError: the folder has no ``<notebook>.ipynb``.
    """
    if folder.is_symlink():
        raise Refused("the learner's folder is a symbolic link: hand in a plain folder")
    path = path if path is not None else folder / f"{notebook}.ipynb"
    if path.is_symlink():
        raise Refused(f"{path.name} is a symbolic link: hand in the notebook itself")
    if not path.exists():
        raise FileNotFoundError(path)
    if not path.is_file():
        raise Refused(f"{path.name} is not a regular file")
    size, _ = _size_and_entries(folder)
    if size > max_mb * 2**20:
        raise Refused(f"the folder holds {size / 2**20:.0f} MB, more than the {max_mb} MB a submission may "
                      "(sparse files count in full): hand in the notebooks only")

    def plain_only(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if not (stat.S_ISREG((m := os.lstat(os.path.join(directory, n)).st_mode))
                                         or stat.S_ISDIR(m))]

    shutil.copytree(folder, target, symlinks=True, ignore=plain_only, dirs_exist_ok=True)
    return target / path.name
