"""How the kit's command lines answer bad input: one line on stderr and exit code 1, never a traceback.

Every ``python -m ...`` entry point of the kit (``helper_utils.data``, the search service, the
maintainer tools) builds its parser with :class:`ArgumentParser` and runs its work through
:func:`run`, so a wrong argument, a missing or corrupt file and a folder it cannot write all get
the same kind of answer, which a script can test and a person can read::

    error: --n must be at least 1, got 0
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

from helper_utils.files import shown_path

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "ArgumentParser", "int_at_least", "one_line", "run"]

EXIT_BAD_INPUT = 1  # what every kit command returns for input it cannot use
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it (128 + SIGINT)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser``, but a bad argument is one line and exit code 1 (argparse: usage, code 2).

    Subcommands made with ``add_subparsers().add_parser`` get this class too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``low``, else a one-line error naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line: its lines joined, an OS error as ``file: reason``."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{shown_path(error.filename)}: {error.strerror}"  # not "[Errno 13] Permission denied: '...'"
    else:
        text = str(error) or type(error).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def run(work: Callable[[], int | None], errors: tuple[type[BaseException], ...] = (),
        interrupted: str = "interrupted") -> int:
    """Call ``work()`` and return its exit status; bad input becomes one line on stderr and status 1.

    Args:
        work: the command's body; returns an exit status (``None`` means 0).
        errors: exception types that mean bad input, besides ``ValueError`` and ``OSError`` (which
            cover a wrong value, a corrupt file, a missing one and one that cannot be written).
        interrupted: what to print after Ctrl-C.

    Returns:
        ``work``'s status; 1 after one of ``errors``; 130 after Ctrl-C.
    """
    try:
        return work() or 0
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, *errors) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
