"""Files, safely: atomic writes (a failure never leaves half a file behind), hashing, and names fit for messages."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "sha256_file", "shown_path"]

_CHUNK = 1 << 20  # read 1 MiB at a time: memory stays flat for a 100 MB archive


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    If the block raises, the temporary file is deleted and ``path`` keeps its old content (or
    stays absent): readers only ever see a complete file. The rename keeps an existing file's
    permissions, or sets ``mode`` when given (``mkstemp`` makes new files private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if mode is None and path.exists():
            mode = path.stat().st_mode & 0o777
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content as 64 hex digits, read in 1 MiB chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shown_path(path: str | bytes | os.PathLike) -> str:
    """A file name fit for a one-line message: bytes that are not UTF-8, and control characters, escaped.

    ``b"caf\\xe9.jpg"`` (a Latin-1 name on a UTF-8 system) -> ``caf\\xe9.jpg``, a name with a newline
    -> ``a\\nb.jpg``: printable on any terminal and in any log, on one line, and still telling the file apart.
    """
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
