"""The tiny framework behind every grader: named cases, a report, strict mode, a time limit.

A grader is a list of cases. Each case is a function that returns normally when the learner's
code behaves, or calls :func:`check` / :func:`fail`, which stop the case with what was
expected, what was got and a hint. Any other exception raised by learner code becomes a
failed case too (``sys.exit()`` included), so a grader never crashes a notebook (unless strict
mode asks it to); only a real KeyboardInterrupt gets through.

An exercise still left as its stub gets one message instead of a failure per case: the first
case calls :func:`require_answer` (or :func:`placeholder`). After a failed ``required`` case
the rest are not run, and the report says so in one line. Every case runs in a known state
(gradients on, float32, one thread, seeded); the learner's global state is given back after.

Example::

    def _shape_case(Block):
        out = Block(16, 24, stride=2)(torch.randn(2, 16, 8, 8))
        check(out.shape == (2, 24, 4, 4), expected=(2, 24, 4, 4), got=tuple(out.shape),
              hint="stride 2 belongs to the depthwise convolution")

    report = grade("test_block", [Case("output shape", lambda: _shape_case(Block))])
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NoReturn, Sequence

import numpy as np
import torch

__all__ = [
    "STRICT_ENV",
    "Case",
    "CaseResult",
    "GraderFailed",
    "Report",
    "check",
    "fail",
    "grade",
    "is_stub_instance",
    "placeholder",
    "placeholder_probe",
    "require_answer",
    "require_callable",
]

STRICT_ENV = "UNITTESTS_STRICT"  # "1": a failing grader raises GraderFailed (CI sets it)
DEFAULT_TIME_LIMIT_S = 30.0  # per grader; catches an endless loop, not a slow laptop
SEED = 0


class _CaseFailed(Exception):
    """Raised inside a case to fail it with an explanation."""

    def __init__(self, expected: Any, got: Any, hint: str = "") -> None:
        super().__init__(f"expected {expected!r}, got {got!r}")
        self.expected, self.got, self.hint = expected, got, hint


class GraderFailed(AssertionError):
    """Raised by a failing grader in strict mode, so that a notebook run fails."""


class _TimeLimitExceeded(BaseException):
    """BaseException so that learner code's ``except Exception`` cannot swallow it.

    A bare ``except:`` or ``except BaseException`` can: then the limit fires again (see ``_time_limit``).
    """


class _Placeholder(Exception):
    """Raised by :func:`placeholder`: the exercise is still its untouched stub."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def check(condition: Any, expected: Any, got: Any, hint: str = "") -> None:
    """Fail the current case unless ``condition`` holds."""
    if not condition:
        raise _CaseFailed(expected, got, hint)


def fail(expected: Any, got: Any, hint: str = "") -> None:
    """Fail the current case unconditionally."""
    raise _CaseFailed(expected, got, hint)


def placeholder(name: str) -> NoReturn:
    """Stop the grader with one message: the exercise ``name`` is still its untouched stub.

    The other cases are not run (they would only repeat that nothing is written yet).
    """
    raise _Placeholder(name)


def require_callable(obj: Any, name: str) -> None:
    """Stop with one message when an exercise answer is still a ``None`` placeholder; fail when not callable."""
    if obj is None:
        placeholder(name)
    if not callable(obj):
        fail(f"`{name}` to be callable (a class or function)", type(obj).__name__,
             f"pass the object itself, e.g. `{name}`, not the result of calling it")


def require_answer(obj: Any, name: str, untouched: Callable[[Any], bool] | None = None) -> None:
    """:func:`require_callable`, then :func:`placeholder` when ``untouched(obj)`` says it is still the stub.

    ``untouched`` runs learner code (it builds or calls the answer the way the stub would be used);
    an exception there means something was written, and the cases that follow report it.
    """
    require_callable(obj, name)
    if untouched is None:
        return
    try:
        still_stub = bool(untouched(obj))
    except Exception:  # learner code may raise anything: not a stub, the cases will say what is wrong
        still_stub = False
    if still_stub:
        placeholder(name)


@contextlib.contextmanager
def placeholder_probe() -> Iterator[None]:
    """Inside it, a grader runs only its first case (the untouched-stub check), prints nothing and never raises.

    Every grader's first case asks whether the answer is still the exercise's stub, so its report's
    ``placeholder`` answers that question in a fraction of a second, even for a finished answer.
    """
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


_PROBING = contextvars.ContextVar("placeholder_probe", default=False)


def is_stub_instance(obj: Any, attributes: Sequence[str]) -> bool:
    """True when ``obj`` has every one of ``attributes`` and all are still ``None`` (an untouched __init__)."""
    return all(hasattr(obj, name) and getattr(obj, name) is None for name in attributes)


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
    placeholder: str = ""  # the exercise's name when it is still its untouched stub


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

    @property
    def placeholder(self) -> str:
        """The exercise's name when the answer is still its untouched stub, else ``""``."""
        return next((r.placeholder for r in self.results if r.placeholder), "")

    def summary(self) -> str:
        n = len(self.results)
        if self:
            return f"All {n} tests passed"
        if self.placeholder:
            return f"Nothing to grade yet: {self.n_failed} of {n} tests failed"
        return f"{self.n_failed} of {n} tests failed"

    def text(self) -> str:
        lines = [f"{self.grader}:"]
        if self.placeholder:  # one message, not one failure per case
            lines += [f"  TODO  `{self.placeholder}`: still the exercise's placeholder",
                      f"        hint:     {_todo(self.placeholder)}"]
            lines.append(self.summary())
            return "\n".join(lines)
        skipped = 0
        for r in self.results:
            if r.passed:
                lines.append(f"  PASS  {r.name}")
            elif r.skipped:
                skipped += 1
            else:
                lines.append(f"  FAIL  {r.name}")
                lines.append(f"        expected: {_short(r.expected)}")
                lines.append(f"        got:      {_short(r.got)}")
                if r.hint:
                    lines.append(f"        hint:     {r.hint}")
        if skipped:
            lines.append(f"  {skipped} more check{'s' if skipped > 1 else ''} not run: fix the first failure above")
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"Report({self.grader!r}: {self.summary()})"

    def _ipython_display_(self) -> None:
        # The grader already printed the report; showing it again as Out[] would only repeat it.
        pass


def _todo(name: str) -> str:
    return (f"write `{name}` between ### START CODE HERE ### and ### END CODE HERE ### in its exercise cell "
            f"(replace every None placeholder), run that cell, then run this one again")


def _strict_mode() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def grade(grader: str, cases: Sequence[Case], *, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
          verbose: bool = True, layers: bool = False,
          error_hint: Callable[[Exception], str | None] | None = None) -> Report:
    """Run ``cases`` in order, seeded, on the CPU and in a known state, print the report and return it.

    Every case starts with gradients on, float32 as the default dtype, no deterministic-algorithm or
    anomaly mode and one thread, whatever the learner's code (or an earlier case) left behind; the
    learner's own settings and random streams are given back afterwards.

    An exception raised by learner code gets the hint ``error_hint(exception)`` when that returns
    one, else a generic one. Only a grader of network layers (``layers=True``) reads a shape error
    as a layer's channels or stride: elsewhere that hint would point away from the mistake.

    Raises:
        GraderFailed: only in strict mode (``UNITTESTS_STRICT=1``) when a case failed.
    """
    probing = _PROBING.get()
    if probing:
        cases = cases[:1]
    report = Report(grader)
    start = time.perf_counter()
    with _learner_state_kept():
        try:
            _run_cases(report, cases, start, time_limit_s, lambda e: _hint_for(e, layers, error_hint))
        finally:
            report.seconds = time.perf_counter() - start
    if verbose and not probing:
        print(report.text())
    if _strict_mode() and not report and not probing:
        raise GraderFailed(f"{grader}: {report.summary()} (strict mode, {STRICT_ENV}=1)")
    return report


def _run_cases(report: Report, cases: Sequence[Case], start: float, time_limit_s: float,
               hint_for: Callable[[Exception], str]) -> None:
    stop_reason = ""
    for case in cases:
        if stop_reason:
            report.results.append(CaseResult(case.name, False, hint=stop_reason, skipped=True))
            continue
        result = _run_case(case, time_limit_s - (time.perf_counter() - start), time_limit_s, hint_for)
        report.results.append(result)
        if result.placeholder:
            stop_reason = f"not run: `{result.placeholder}` is still the exercise's placeholder"
        elif not result.passed and (case.required or str(result.got).startswith(_TIMEOUT)):
            stop_reason = f"not run: fix '{case.name}' first"


_TIMEOUT = "took longer than"


def _run_case(case: Case, seconds_left: float, time_limit_s: float,
              hint_for: Callable[[Exception], str]) -> CaseResult:
    try:
        with _known_state(), _seeded(), _time_limit(max(seconds_left, 0.001)):
            case.run()
    except _Placeholder as e:
        return CaseResult(case.name, False, f"`{e.name}` written", "the exercise's placeholder", _todo(e.name),
                          placeholder=e.name)
    except _CaseFailed as e:
        return CaseResult(case.name, False, e.expected, e.got, e.hint)
    except _TimeLimitExceeded:
        return CaseResult(case.name, False, "an answer within the grader's time limit",
                          f"{_TIMEOUT} {time_limit_s:g} s",
                          "look for an endless loop (a retry loop that catches every exception never ends), "
                          "or work that grows with the dataset size")
    except SystemExit as e:  # sys.exit() / exit() in learner code: a failed case, not a dead grader
        return CaseResult(case.name, False, "no exception", f"SystemExit: {e}" if str(e) else "SystemExit",
                          "your code called sys.exit() (or exit()): raise an exception or return instead")
    except KeyboardInterrupt:
        raise  # the user pressed stop: never swallow that
    except Exception as e:  # learner code may raise anything; report it, never crash
        return CaseResult(case.name, False, "no exception", f"{type(e).__name__}: {e}", hint_for(e))
    except BaseException as e:  # GeneratorExit and friends raised by hand: a failed case too
        return CaseResult(case.name, False, "no exception", f"{type(e).__name__}: {e}",
                          "your code raised this; raise an ordinary exception (or return) instead")
    return CaseResult(case.name, True)


def _hint_for(error: Exception, layers: bool = False,
              error_hint: Callable[[Exception], str | None] | None = None) -> str:
    """The hint for an exception raised by learner code: the grader's own first, then a generic one."""
    text = str(error)
    if error_hint is not None:
        try:
            specific = error_hint(error)
        except Exception:  # a hint must never cost the report
            specific = None
        if specific:
            return specific
    if "NoneType" in text:
        return "something is still None: replace every None placeholder in the exercise cell, then re-run it"
    if isinstance(error, NotImplementedError):
        return "a method is not implemented yet"
    if layers and isinstance(error, RuntimeError) and ("size" in text or "shape" in text or "channels" in text):
        return "a layer gets a tensor of the wrong shape: check its in/out channels and stride"
    if isinstance(error, RuntimeError) and ("must match the size" in text or "shape" in text):
        return ("two tensors of shapes that do not fit met in one operation: print the shapes along the way "
                "and add the missing dimension (None) where one should broadcast against the other")
    return "your code raised this error; read its message, fix the exercise cell and re-run it"


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Seed every RNG for the case (the learner's streams are given back by ``_learner_state_kept``)."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    yield


def _global_state() -> dict[str, Any]:
    return {
        "dtype": torch.get_default_dtype(),
        "grad": torch.is_grad_enabled(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "anomaly_nan": torch.is_anomaly_check_nan_enabled(),
        "threads": torch.get_num_threads(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "torch_rng": torch.get_rng_state(),
        # only when CUDA is in use already: asking for its state would start it (seconds, and memory)
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }


def _set_global_state(state: dict[str, Any]) -> None:
    torch.set_default_dtype(state["dtype"])
    torch.set_grad_enabled(state["grad"])
    torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["deterministic_warn_only"])
    torch.autograd.set_detect_anomaly(state["anomaly"], check_nan=state["anomaly_nan"])
    torch.set_num_threads(state["threads"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])


@contextlib.contextmanager
def _learner_state_kept() -> Iterator[None]:
    """Give back the learner's global torch/numpy/random state, whatever the cases (or learner code) changed."""
    saved = _global_state()
    try:
        yield
    finally:
        _set_global_state(saved)


@contextlib.contextmanager
def _known_state() -> Iterator[None]:
    """The state every case starts in: what a fresh kernel has, with one thread (tiny tensors: fastest, steady)."""
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)
    torch.use_deterministic_algorithms(False)
    torch.autograd.set_detect_anomaly(False)
    torch.set_num_threads(1)
    yield


_RE_FIRE_S = 0.05  # how often the limit fires again once learner code has swallowed it


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the case after ``seconds`` (main thread on POSIX only; elsewhere no limit).

    A retry loop that catches everything (``except:``, ``except BaseException``) swallows one
    interruption. So once the limit has passed, the alarm fires again every ``_RE_FIRE_S`` and a
    trace function raises on every line of Python code the case runs (the ``except`` clause
    included, from which the exception escapes the loop), until the case has returned.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_trace = sys.gettrace()
    expired = False

    def _trace(frame, event, arg):
        # On a new line only: Python unsets a trace function that raises, and on an "exception" event
        # that would happen before the ``except`` clause, whose first line is where the loop is left.
        if expired and event == "line" and frame.f_code.co_filename != __file__:  # never in the clean-up
            raise _TimeLimitExceeded()
        return _trace

    def _on_alarm(signum, frame):
        nonlocal expired
        expired = True
        # Python unsets a trace function that raised: install it again every time the alarm fires.
        sys.settrace(_trace)  # new frames
        while frame is not None and frame.f_code is not _run_case.__code__:  # frames running the case
            frame.f_trace = _trace
            frame = frame.f_back
        raise _TimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, _RE_FIRE_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        expired = False
        sys.settrace(previous_trace)
        signal.signal(signal.SIGALRM, previous)
