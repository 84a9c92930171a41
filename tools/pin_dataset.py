"""Write the list of files ``fetch`` accepts (``helper_utils/dataset_files.txt``) from the pinned archive.

The list is read from the zip's central directory, without extracting anything: each file's path
below the archive's top folder, its size and its CRC-32. Run it when the pinned commit changes::

    python -m tools.pin_dataset ../shared/datasets/clothing-dataset-small-master.zip

``--check`` compares an archive with the committed list instead (exit code 1 when they differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from helper_utils import archive
from helper_utils.cli import ArgumentParser, run
from helper_utils.files import atomic_path

__all__ = ["pinned_text", "main"]

COMMAND = "python -m tools.pin_dataset"


def pinned_text(zip_path: Path) -> str:
    """The list's text for the archive at ``zip_path``: a header, then ``path<TAB>size<TAB>crc32`` per file."""
    with archive._open_zip(zip_path) as zf:
        top = archive._single_top_folder(zf, zip_path)
        files = archive.listing(zf, top)
    lines = [f"# clothing-dataset-small at commit {archive.COMMIT}: every file of its archive, below the top folder.",
             f"# path, size in bytes, CRC-32 (hex), from the zip's central directory. Written by `{COMMAND} ARCHIVE`.",
             *(f"{name}\t{size}\t{crc:08x}" for name, (size, crc) in sorted(files.items()))]
    return "\n".join(lines) + "\n"


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, help="the pinned commit's zip archive")
    parser.add_argument("--check", action="store_true", help="compare with the committed list; write nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run(lambda: _main(args), errors=(archive.FetchError,))


def _main(args: argparse.Namespace) -> int:
    if not args.archive.is_file():
        raise FileNotFoundError(f"no archive at {args.archive}")
    text = pinned_text(args.archive)
    if args.check:
        same = archive.PINNED_FILES.read_text(encoding="utf-8") == text
        print(f"{archive.PINNED_FILES.name} {'matches' if same else 'does NOT match'} {args.archive}")
        return 0 if same else 1
    with atomic_path(archive.PINNED_FILES, mode=0o644) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {archive.PINNED_FILES}: {text.count(chr(10)) - 2} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
