"""The graders of notebooks 01-03 pass the references and correct alternatives, and fail stubs and mutants.

Graders are named ``test_*``: they are reached through ``unittests.<name>`` only, never imported
by name (pytest would collect them as tests). ``test_transforms`` takes two answers, so its
answers here are ``(train_transform, val_transform)`` pairs.
"""

from __future__ import annotations

import time

import pytest

import unittests
# the mutants sit beside this file; pytest puts this folder on sys.path (no __init__.py here)
import mutants_transforms as transforms
import mutants_block as block
import mutants_backbone as backbone
from helper_utils import models
from helper_utils import transforms as reference_transforms
from helper_utils.training import compute_class_weights





# grader name: (reference answer, {name: correct alternative}, {name: stub}, {name: (mutant, phrase in its hints)})
GRADERS = {
    "test_transforms": ((reference_transforms.train_transform, reference_transforms.val_transform),
                        transforms.TRANSFORMS_CORRECT, transforms.TRANSFORMS_STUBS, transforms.TRANSFORMS_MUTANTS),
    "test_class_weights": (compute_class_weights, transforms.WEIGHTS_CORRECT, transforms.WEIGHTS_STUBS,
                           transforms.WEIGHTS_MUTANTS),
    "test_block": (models.InvertedResidualBlock, block.CORRECT, block.STUBS, block.MUTANTS),
    "test_backbone": (models.MobileNetBackbone, backbone.BACKBONE_CORRECT, backbone.BACKBONE_STUBS,
                      backbone.BACKBONE_MUTANTS),
    "test_classifier": (models.MobileNetLikeClassifier, backbone.CLASSIFIER_CORRECT, backbone.CLASSIFIER_STUBS,
                        backbone.CLASSIFIER_MUTANTS),
}


def _grade(grader: str, answer):
    fn = getattr(unittests, grader)
    return fn(*answer) if grader == "test_transforms" else fn(answer)


def _params(kind: str):
    index = {"correct": 1, "stub": 2}[kind]
    return [pytest.param(grader, answer, id=f"{grader}-{name}")
            for grader, entry in GRADERS.items() for name, answer in entry[index].items()]


def _mutant_params():
    return [pytest.param(grader, name, mutant, phrase, id=f"{grader}-{name}")
            for grader, entry in GRADERS.items() for name, (mutant, phrase) in entry[3].items()]


def _failed(report):
    return [r for r in report.results if not r.passed and not r.skipped]


@pytest.fixture(autouse=True)
def _lenient(monkeypatch):
    monkeypatch.delenv(unittests.STRICT_ENV, raising=False)


@pytest.mark.parametrize("grader", GRADERS)
def test_grader_passes_the_reference_quickly(grader, capsys):
    start = time.perf_counter()
    report = _grade(grader, GRADERS[grader][0])
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    assert report, out
    assert report.summary() == f"All {len(report.results)} tests passed"
    assert report.summary() in out
    assert seconds < 2.0, f"{grader} took {seconds:.2f} s on the reference (budget: well under 2 s)"


@pytest.mark.parametrize("grader, answer", _params("correct"))
def test_grader_passes_a_correct_alternative(grader, answer, capsys):
    report = _grade(grader, answer)
    assert report, capsys.readouterr().out


@pytest.mark.parametrize("grader, answer", _params("stub"))
def test_grader_fails_the_stub_cleanly(grader, answer, capsys):
    report = _grade(grader, answer)
    out = capsys.readouterr().out
    assert not report
    assert report.summary().endswith("failed") and report.summary() in out
    failed = _failed(report)
    assert failed and all(r.hint for r in failed), out


@pytest.mark.parametrize("grader, name, mutant, phrase", _mutant_params())
def test_grader_fails_a_mutant_with_the_right_hint(grader, name, mutant, phrase, capsys):
    report = _grade(grader, mutant)
    out = capsys.readouterr().out
    assert not report, f"{grader} passed the mutant '{name}':\n{out}"
    failed = _failed(report)
    assert all(r.hint for r in failed), out
    assert any(phrase in r.hint for r in failed), f"no hint of '{name}' says {phrase!r}:\n{out}"


@pytest.mark.parametrize("grader", GRADERS)
def test_grader_has_five_mutants_or_more(grader):
    assert len(GRADERS[grader][3]) >= 5


class _RaisesInInit:
    def __init__(self, *args, **kwargs):
        raise ValueError("learner bug")


def _raises(*args, **kwargs):
    raise ValueError("learner bug")


@pytest.mark.parametrize("grader", GRADERS)
@pytest.mark.parametrize("junk", [42, "InvertedResidualBlock", _RaisesInInit, _raises, lambda *a, **k: object()],
                         ids=["int", "str", "raises-in-init", "raises", "returns-object"])
def test_grader_never_crashes_on_junk(grader, junk, capsys):
    answer = (junk, junk) if grader == "test_transforms" else junk
    report = _grade(grader, answer)
    out = capsys.readouterr().out
    assert not report
    assert all(r.hint for r in _failed(report)), out
    if junk in (_RaisesInInit, _raises):
        assert "ValueError: learner bug" in out


@pytest.mark.parametrize("grader", GRADERS)
def test_grader_raises_in_strict_mode(grader, monkeypatch, capsys):
    monkeypatch.setenv(unittests.STRICT_ENV, "1")
    stub = next(iter(GRADERS[grader][2].values()))
    with pytest.raises(unittests.GraderFailed):
        _grade(grader, stub)
    assert _grade(grader, GRADERS[grader][0])  # a passing grader does not raise


def test_reference_parameter_counts_match_the_spec():
    assert models.count_parameters(models.MobileNetBackbone()) == 32_584
    assert models.count_parameters(models.MobileNetLikeClassifier()) == 33_039
