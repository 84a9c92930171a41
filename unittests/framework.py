"""The tiny framework behind every grader: named cases, a report, strict mode, a time limit.

A grader is a list of cases. Each case is a function that returns normally when the learner's
code behaves, or calls :func:`check` / :func:`fail`, which stop the case with what was
expected, what was got and a hint. Any other exception raised by learner code becomes a
failed case too, so a grader never crashes a notebook (unless strict mode asks it to).

Example::

    def _shape_case(Block):
        out = Block(16, 24, stride=2)(torch.randn(2, 16, 8, 8))
        check(out.shape == (2, 24, 4, 4), expected=(2, 24, 4, 4), got=tuple(out.shape),
              hint="stride 2 belongs to the depthwise convolution")

    report = grade("test_block", [Case("output shape", lambda: _shape_case(Block))])
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

__all__ = [
    "STRICT_ENV",
    "Case",
    "CaseFailed",
    "CaseResult",
    "GraderFailed",
    "Report",
    "check",
    "fail",
    "grade",
    "require_callable",
    "strict_mode",
]

STRICT_ENV = "UNITTESTS_STRICT"  # "1": a failing grader raises GraderFailed (CI sets it)
DEFAULT_TIME_LIMIT_S = 30.0  # per grader; catches an endless loop, not a slow laptop
SEED = 0


class CaseFailed(Exception):
    """Raised inside a case to fail it with an explanation."""

    def __init__(self, expected: Any, got: Any, hint: str = "") -> None:
        super().__init__(f"expected {expected!r}, got {got!r}")
        self.expected, self.got, self.hint = expected, got, hint


class GraderFailed(AssertionError):
    """Raised by a failing grader in strict mode, so that a notebook run fails."""


class _TimeLimitExceeded(BaseException):
    """BaseException so that learner code's ``except Exception`` cannot swallow it."""


def check(condition: Any, expected: Any, got: Any, hint: str = "") -> None:
    """Fail the current case unless ``condition`` holds."""
    if not condition:
        raise CaseFailed(expected, got, hint)


def fail(expected: Any, got: Any, hint: str = "") -> None:
    """Fail the current case unconditionally."""
    raise CaseFailed(expected, got, hint)


def require_callable(obj: Any, name: str) -> None:
    """Fail with a clear message when an exercise answer is still a ``None`` placeholder."""
    if obj is None:
        fail(f"`{name}` to be defined", "None",
             f"`{name}` is still the None placeholder: write your code in the exercise cell and run it")
    if not callable(obj):
        fail(f"`{name}` to be callable (a class or function)", type(obj).__name__,
             f"pass the object itself, e.g. `{name}`, not the result of calling it")


@dataclass(frozen=True)
class Case:
    """One named check. ``required`` cases stop the grader when they fail (later cases would only repeat the error)."""

    name: str
    run: Callable[[], None]
    required: bool = False


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    expected: Any = None
    got: Any = None
    hint: str = ""
    skipped: bool = False


@dataclass
class Report:
    """What a grader found. Truthy exactly when every case passed."""

    grader: str
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_failed(self) -> int:
        return sum(not r.passed for r in self.results)

    def __bool__(self) -> bool:
        return bool(self.results) and self.n_failed == 0

    def summary(self) -> str:
        n = len(self.results)
        return f"All {n} tests passed" if self else f"{self.n_failed} of {n} tests failed"

    def text(self) -> str:
        lines = [f"{self.grader}:"]
        for r in self.results:
            if r.passed:
                lines.append(f"  PASS  {r.name}")
                continue
            lines.append(f"  {'SKIP' if r.skipped else 'FAIL'}  {r.name}")
            if not r.skipped:
                lines.append(f"        expected: {_short(r.expected)}")
                lines.append(f"        got:      {_short(r.got)}")
            if r.hint:
                lines.append(f"        hint:     {r.hint}")
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"Report({self.grader!r}: {self.summary()})"

    def _ipython_display_(self) -> None:
        # The grader already printed the report; showing it again as Out[] would only repeat it.
        pass


def strict_mode() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def grade(grader: str, cases: Sequence[Case], *, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
          verbose: bool = True) -> Report:
    """Run ``cases`` in order, seeded and on the CPU, print the report and return it.

    Raises:
        GraderFailed: only in strict mode (``UNITTESTS_STRICT=1``) when a case failed.
    """
    report = Report(grader)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and steady on a busy machine
    start = time.perf_counter()
    try:
        _run_cases(report, cases, start, time_limit_s)
    finally:
        torch.set_num_threads(threads)
        report.seconds = time.perf_counter() - start
    if verbose:
        print(report.text())
    if strict_mode() and not report:
        raise GraderFailed(f"{grader}: {report.summary()} (strict mode, {STRICT_ENV}=1)")
    return report


_TIMEOUT = "no answer within the time limit"


def _run_cases(report: Report, cases: Sequence[Case], start: float, time_limit_s: float) -> None:
    stop_reason = ""
    for case in cases:
        if stop_reason:
            report.results.append(CaseResult(case.name, False, hint=stop_reason, skipped=True))
            continue
        result = _run_case(case, time_limit_s - (time.perf_counter() - start))
        report.results.append(result)
        if not result.passed and (case.required or result.got == _TIMEOUT):
            stop_reason = f"not run: fix '{case.name}' first"


def _run_case(case: Case, seconds_left: float) -> CaseResult:
    try:
        with _seeded(), _time_limit(max(seconds_left, 0.001)):
            case.run()
    except CaseFailed as e:
        return CaseResult(case.name, False, e.expected, e.got, e.hint)
    except _TimeLimitExceeded:
        return CaseResult(case.name, False, "an answer within the grader's time limit", _TIMEOUT,
                          "look for an endless loop, or work that grows with the dataset size")
    except Exception as e:  # learner code may raise anything; report it, never crash
        return CaseResult(case.name, False, "no exception", f"{type(e).__name__}: {e}", _hint_for(e))
    return CaseResult(case.name, True)


def _hint_for(error: Exception) -> str:
    text = str(error)
    if "NoneType" in text:
        return "something is still None: replace every None placeholder in the exercise cell, then re-run it"
    if isinstance(error, NotImplementedError):
        return "a method is not implemented yet"
    if isinstance(error, RuntimeError) and ("size" in text or "shape" in text or "channels" in text):
        return "a layer gets a tensor of the wrong shape: check its in/out channels and stride"
    return "your code raised this error; read its message, fix the exercise cell and re-run it"


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Seed every RNG for the case and give the learner's RNG state back afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(SEED)
        np.random.seed(SEED)
        torch.manual_seed(SEED)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the case after ``seconds`` (main thread on POSIX only; elsewhere no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_alarm(signum, frame):
        raise _TimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
