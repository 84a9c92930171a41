"""The tests every grader gets, built from one table per notebook.

Each ``test_<notebook>.py`` beside this file declares::

    GRADERS = {"test_block": Grader(reference, correct={...}, stubs={...}, mutants={...})}
    globals().update(grader_tests(GRADERS))

and so checks, for every grader of its notebook: it passes the reference answer (generated from
the solution notebook) quickly and every correct alternative; it fails the stubs cleanly, with a
hint on every failed case; it fails every mutant, either at the named case or with the named
words in a hint; it raises in strict mode; it never crashes on junk.

Graders are named ``test_*``: they are reached through ``unittests.<name>`` only, never imported by
name (pytest would collect them as tests).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch

import unittests

MIN_MUTANTS = 5


@dataclass
class Grader:
    """One grader's answers: ``mutants`` maps a name to ``(answer, failing case name or words of a hint)``."""

    reference: Any
    correct: dict = field(default_factory=dict)
    stubs: dict = field(default_factory=dict)
    mutants: dict = field(default_factory=dict)
    call: Callable | None = None  # how to hand an answer to the grader; default grader(answer)


def grade(graders: dict, name: str, answer):
    grader = getattr(unittests, name)
    call = graders[name].call
    return call(grader, answer) if call else grader(answer)


def failed(report) -> list:
    return [r for r in report.results if not r.passed and not r.skipped]


def caught(report, expected: str) -> bool:
    """The mutant failed at the case named ``expected``, or a failed case's hint says ``expected``."""
    return any(r.name == expected or expected in (r.hint or "") for r in failed(report))


class _RaisesInInit:
    def __init__(self, *args, **kwargs):
        raise ValueError("learner bug")


def _raises(*args, **kwargs):
    raise ValueError("learner bug")


JUNK = {"int": 42, "str": "InvertedResidualBlock", "raises-in-init": _RaisesInInit, "raises": _raises,
        "returns-object": lambda *a, **k: object()}


def grader_tests(graders: dict) -> dict[str, Callable]:
    """The test functions for ``graders``, to put in a test module's namespace."""

    def params(kind):
        return [pytest.param(g, answer, id=f"{g}-{n}") for g, entry in graders.items()
                for n, answer in getattr(entry, kind).items()]

    mutant_params = [pytest.param(g, n, answer, expected, id=f"{g}-{n}") for g, entry in graders.items()
                     for n, (answer, expected) in entry.mutants.items()]

    @pytest.fixture(autouse=True)
    def _lenient_one_thread(monkeypatch):
        """Not strict, and one intra-op thread: tiny tensors, steady timings on a busy runner."""
        monkeypatch.delenv(unittests.STRICT_ENV, raising=False)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(before)

    @pytest.mark.parametrize("name", graders)
    def test_grader_passes_the_reference_quickly(name, capsys):
        start = time.perf_counter()
        report = grade(graders, name, graders[name].reference)
        seconds = time.perf_counter() - start
        out = capsys.readouterr().out
        assert report, out
        assert report.summary() == f"All {len(report.results)} tests passed" and report.summary() in out
        assert seconds < 2.0, f"{name} took {seconds:.2f} s on the reference (budget: well under 2 s)"

    @pytest.mark.parametrize("name, answer", params("correct"))
    def test_grader_passes_a_correct_alternative(name, answer, capsys):
        report = grade(graders, name, answer)
        assert report, capsys.readouterr().out

    @pytest.mark.parametrize("name, answer", params("stubs"))
    def test_grader_fails_the_stub_cleanly(name, answer, capsys):
        report = grade(graders, name, answer)
        out = capsys.readouterr().out
        assert not report
        assert report.summary().endswith("failed") and report.summary() in out
        assert failed(report) and all(r.hint for r in failed(report)), out
        assert "Traceback" not in out

    @pytest.mark.parametrize("name, mutant_name, mutant, expected", mutant_params)
    def test_grader_fails_the_mutant(name, mutant_name, mutant, expected, capsys):
        report = grade(graders, name, mutant)
        out = capsys.readouterr().out
        assert not report, f"{name} passed the mutant '{mutant_name}':\n{out}"
        assert all(r.hint for r in failed(report)), out
        assert caught(report, expected), f"mutant '{mutant_name}': no failed case named or hinting {expected!r}:\n{out}"

    @pytest.mark.parametrize("name", graders)
    def test_grader_has_enough_mutants(name):
        assert len(graders[name].mutants) >= MIN_MUTANTS

    @pytest.mark.parametrize("name", graders)
    @pytest.mark.parametrize("junk", JUNK.values(), ids=list(JUNK))
    def test_grader_never_crashes_on_junk(name, junk, capsys):
        answer = (junk, junk) if name == "test_transforms" else junk
        report = getattr(unittests, name)(*answer) if isinstance(answer, tuple) else getattr(unittests, name)(answer)
        out = capsys.readouterr().out
        assert not report
        assert all(r.hint for r in failed(report)), out
        assert "Traceback" not in out

    @pytest.mark.parametrize("name", graders)
    def test_grader_raises_in_strict_mode(name, monkeypatch, capsys):
        monkeypatch.setenv(unittests.STRICT_ENV, "1")
        stub = next(iter(graders[name].stubs.values()))
        with pytest.raises(unittests.GraderFailed):
            grade(graders, name, stub)
        assert grade(graders, name, graders[name].reference)  # a passing grader does not raise

    return {f.__name__: f for f in (
        _lenient_one_thread, test_grader_passes_the_reference_quickly, test_grader_passes_a_correct_alternative,
        test_grader_fails_the_stub_cleanly, test_grader_fails_the_mutant, test_grader_has_enough_mutants,
        test_grader_never_crashes_on_junk, test_grader_raises_in_strict_mode)}


def hint_tests(hints: list) -> dict[str, Callable]:
    """A test that each mutant's failed hints contain the given words, as the learner reads them.

    ``hints`` holds ``(grader name, mutant, words)`` rows.
    """

    @pytest.mark.parametrize("name, mutant, words", [
        pytest.param(name, mutant, words, id=f"{name}-{getattr(mutant, '__name__', mutant)}")
        for name, mutant, words in hints])
    def test_mutant_hints_name_the_mistake(name, mutant, words, capsys):
        report = getattr(unittests, name)(mutant)
        said = " | ".join(r.hint or "" for r in report.results if not r.passed)
        assert words in said, f"{name} on {getattr(mutant, '__name__', mutant)}: {said}"

    return {"test_mutant_hints_name_the_mistake": test_mutant_hints_name_the_mistake}


def first_hint_tests(hints: list) -> dict[str, Callable]:
    """A test that the *first* failure a learner reads names the mistake: ``(grader name, mutant, words)`` rows.

    For mistakes whose first hint once pointed elsewhere (a generic message, another mistake's hint).
    """

    @pytest.mark.parametrize("name, mutant, words", [
        pytest.param(name, mutant, words, id=f"{name}-{getattr(mutant, '__name__', mutant)}")
        for name, mutant, words in hints])
    def test_first_hint_names_the_mistake(name, mutant, words, capsys):
        report = getattr(unittests, name)(mutant)
        first = next((r for r in failed(report)), None)
        assert first is not None, f"{name} passed {getattr(mutant, '__name__', mutant)}"
        assert words in (first.hint or ""), f"{name} on {getattr(mutant, '__name__', mutant)}: {first.name}: {first.hint}"

    return {"test_first_hint_names_the_mistake": test_first_hint_names_the_mistake}
