"""The grader of notebook 07 (``test_grad_cam``) passes the reference and correct alternatives, and fails
the stubs and plausible wrong implementations at the case that names their mistake.

Graders are named ``test_*``: they are reached through ``unittests.<name>`` only, never imported
by name (pytest would collect them as tests).
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch

import unittests
# the mutants sit beside this file; pytest puts this folder on sys.path (no __init__.py here)
import mutants_07 as cams
from helper_utils.explain import grad_cam as reference


@pytest.fixture(autouse=True)
def _lenient(monkeypatch):
    monkeypatch.delenv(unittests.STRICT_ENV, raising=False)


@pytest.fixture(autouse=True)
def one_thread():
    """As in the other grader tests: tiny tensors, one intra-op thread (steady timings on a busy runner)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _grade(answer):
    return unittests.test_grad_cam(answer)


def test_grader_passes_the_reference_quickly(capsys):
    start = time.perf_counter()
    report = _grade(reference)
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    assert report, out
    assert out.splitlines()[-1] == report.summary() == f"All {len(report.results)} tests passed"
    assert seconds < 2.0, f"test_grad_cam took {seconds:.2f} s on the reference (budget: well under 2 s)"


@pytest.mark.parametrize("name", cams.CORRECT)
def test_grader_passes_a_correct_alternative(name, capsys):
    report = _grade(cams.CORRECT[name])
    assert report, capsys.readouterr().out


@pytest.mark.parametrize("name", cams.STUBS)
def test_grader_fails_the_stub_cleanly(name, capsys):
    report = _grade(cams.STUBS[name])
    out = capsys.readouterr().out
    assert not report
    assert report.results[0].name.endswith("is defined")
    assert report.summary() in out and out.rstrip().endswith("tests failed")
    failed = [r for r in report.results if not r.passed and not r.skipped]
    assert failed and all(r.hint for r in failed), out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", cams.MUTANTS)
def test_grader_fails_a_mutant_at_the_right_case(name, capsys):
    mutant, case = cams.MUTANTS[name]
    report = _grade(mutant)
    out = capsys.readouterr().out
    assert not report, f"test_grad_cam passed the mutant '{name}':\n{out}"
    results = {r.name: r for r in report.results}
    assert case in results, f"no case named {case!r} in {list(results)}"
    assert not results[case].passed and not results[case].skipped, f"mutant '{name}' should fail case {case!r}:\n{out}"
    failed = [r for r in report.results if not r.passed and not r.skipped]
    assert all(r.hint for r in failed), out


def test_grader_has_five_mutants_or_more():
    assert len(cams.MUTANTS) >= 5


@pytest.mark.parametrize("mutant, words", cams.HINTS, ids=[m.__name__ for m, _ in cams.HINTS])
def test_mutant_hints_name_the_mistake(mutant, words, capsys):
    report = _grade(mutant)
    hints = " | ".join(r.hint for r in report.results if not r.passed)
    assert words in hints, f"{mutant.__name__}: {hints}"


def test_grader_raises_in_strict_mode(monkeypatch, capsys):
    monkeypatch.setenv(unittests.STRICT_ENV, "1")
    with pytest.raises(unittests.GraderFailed):
        _grade(None)
    assert _grade(reference)  # a passing grader does not raise


def test_grader_survives_an_answer_that_raises(capsys):
    def broken(activations, gradients, size=(64, 64)):
        raise RuntimeError("shape '[2, 5]' is invalid for input of size 3")

    report = _grade(broken)
    assert not report and "RuntimeError" in report.text()


def test_grader_leaves_random_state_and_threads_alone(capsys):
    threads = torch.get_num_threads()
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    _grade(reference)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert torch.get_num_threads() == threads
