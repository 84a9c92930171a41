"""Kernel side of ``python -m unittests.grade``: limits, a capped output, and every grader's report as JSON.

The submissions grader runs ``install(...)`` in each learner's kernel before any of the learner's
cells. From then on every ``unittests.test_*`` call appends one JSON line to ``record_path``::

    {"grader": "test_block", "cases": [{"name": ..., "passed": ..., "skipped": ...,
                                        "expected": ..., "got": ..., "hint": ...}, ...]}

so the grader reads the results from a file, never from printed text. Only the public
``Report`` fields are used (``grader``, ``results`` with ``name``, ``passed``, ``skipped``,
``expected``, ``got``, ``hint``).
"""

from __future__ import annotations

import functools
import io
import json
import resource
import sys
from typing import Any, Callable

__all__ = ["install"]

_TEXT_LIMIT = 300  # characters kept of each expected/got/hint value
_WRAPPED = "__grade_recorded__"


def _text(value: Any) -> str:
    """A short one-line text of any value (learner objects may have huge or failing reprs)."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception as e:  # a learner's __repr__ may raise
        text = f"<unprintable {type(value).__name__}: {type(e).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."


def _report_record(grader: str, report: Any) -> dict:
    """The JSON-ready record of one grader call's ``Report``."""
    cases = []
    for r in getattr(report, "results", []):
        cases.append({
            "name": _text(r.name),
            "passed": bool(r.passed),
            "skipped": bool(getattr(r, "skipped", False)),
            "expected": None if r.expected is None else _text(r.expected),
            "got": None if r.got is None else _text(r.got),
            "hint": _text(r.hint or ""),
        })
    return {"grader": grader, "cases": cases}


class _CappedStream(io.TextIOBase):
    """Forwards at most ``limit`` characters to ``stream``, then one truncation line, then nothing.

    A submission that prints 100 MB then costs the grader nothing: the text never leaves the kernel.
    """

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream, self._left, self._told = stream, limit, False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        n = len(text)
        if self._left > 0:
            kept = text[: self._left]
            self._left -= len(kept)
            self._stream.write(kept)
        elif not self._told:
            self._told = True
            self._stream.write("\n[output truncated by the grader]\n")
        return n

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty...: the real stream's
        return getattr(self._stream, name)


def _limit_memory(extra_mb: int) -> None:
    """Cap the address space at what the kernel holds now plus ``extra_mb``.

    Relative to the current size because importing torch alone maps several GB of address space;
    an allocation past the cap raises ``MemoryError`` (or kills the kernel) instead of swapping the machine.
    """
    with open("/proc/self/status") as f:
        size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    cap = size_kb * 1024 + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _recording(grader: Callable, name: str, record_path: str) -> Callable:
    @functools.wraps(grader)
    def wrapper(*args, **kwargs):
        report = grader(*args, **kwargs)
        # One write of one line: a later crash of the kernel cannot leave half a record behind.
        line = json.dumps(_report_record(name, report)) + "\n"
        with open(record_path, "a", encoding="utf-8") as f:
            f.write(line)
        return report

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def install(record_path: str, memory_mb: int | None = None, output_chars: int | None = None) -> None:
    """Wrap every ``unittests.test_*`` to record its report; optionally cap memory and output.

    Args:
        record_path: the JSON-lines file each grader call appends to.
        memory_mb: address space the learner's code may add to the kernel's current size (Linux only).
        output_chars: characters of stdout and of stderr passed on to the grader; the rest is dropped.
    """
    import unittests

    for name in dir(unittests):
        grader = getattr(unittests, name)
        if name.startswith("test_") and callable(grader) and not getattr(grader, _WRAPPED, False):
            setattr(unittests, name, _recording(grader, name, record_path))
    if output_chars is not None:
        sys.stdout = _CappedStream(sys.stdout, output_chars)
        sys.stderr = _CappedStream(sys.stderr, output_chars)
    if memory_mb is not None and sys.platform.startswith("linux"):
        _limit_memory(memory_mb)
