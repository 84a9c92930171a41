"""The grader framework itself, and what every grader owes the learner (one test over all eleven)."""

import random
import time

import numpy as np
import pytest
import torch

import helper_utils as ref
import unittests
from unittests.framework import Case, GraderFailed, check, grade

# every grader with the reference answer it must pass
REFERENCES = {
    "test_transforms": (ref.train_transform, ref.val_transform),
    "test_class_weights": (ref.compute_class_weights,),
    "test_block": (ref.InvertedResidualBlock,),
    "test_backbone": (ref.MobileNetBackbone,),
    "test_classifier": (ref.MobileNetLikeClassifier,),
    "test_triplet_dataset": (ref.TripletDataset,),
    "test_siamese_encoder": (ref.SiameseEncoder,),
    "test_siamese_network": (ref.SiameseNetwork,),
    "test_query_embedding": (ref.get_query_img_embedding,),
    "test_get_embeddings": (ref.get_embeddings,),
    "test_find_closest": (ref.find_closest,),
}


def _failing_case():
    check(1 + 1 == 3, expected=3, got=2, hint="arithmetic")


def test_report_lists_cases_and_is_truthy_only_when_all_pass(capsys):
    report = grade("demo", [Case("ok", lambda: None), Case("wrong", _failing_case)])
    out = capsys.readouterr().out.splitlines()
    assert not report and out[-1] == "1 of 2 tests failed"
    assert "  FAIL  wrong" in out and "        hint:     arithmetic" in out
    assert grade("demo", [Case("ok", lambda: None)], verbose=False)
    assert not grade("empty", [], verbose=False)  # nothing checked is not a pass


def test_learner_exceptions_become_failed_cases_and_required_cases_stop_the_rest():
    def raises():
        None.forward  # noqa: B018  (a placeholder left as None)

    report = grade("demo", [Case("first", raises, required=True), Case("second", lambda: None)], verbose=False)
    assert [r.passed for r in report.results] == [False, False]
    assert "AttributeError" in report.results[0].got and "None" in report.results[0].hint
    assert report.results[1].skipped


def test_time_limit_interrupts_an_endless_loop():
    def endless():
        while True:
            pass

    start = time.perf_counter()
    report = grade("demo", [Case("loop", endless)], time_limit_s=0.3, verbose=False)
    assert not report and time.perf_counter() - start < 5


def test_strict_mode_raises_on_failure_only(monkeypatch):
    monkeypatch.setenv("UNITTESTS_STRICT", "1")
    with pytest.raises(GraderFailed, match="1 of 1 tests failed"):
        grade("demo", [Case("wrong", _failing_case)], verbose=False)
    assert grade("demo", [Case("ok", lambda: None)], verbose=False)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_grader_passes_its_reference_quickly_and_prints_a_verdict(name, capsys):
    start = time.perf_counter()
    report = getattr(unittests, name)(*REFERENCES[name])
    assert report and time.perf_counter() - start < 2.0
    assert capsys.readouterr().out.splitlines()[-1] == f"All {len(report.results)} tests passed"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_grader_fails_cleanly_on_none_placeholders(name):
    report = getattr(unittests, name)(*[None] * len(REFERENCES[name]))
    assert not report and "None" in report.text()


def _seed_all(seed=123):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _draw_all():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_graders_leave_random_state_and_threads_alone():
    threads = torch.get_num_threads()
    _seed_all()
    expected = _draw_all()
    _seed_all()
    for name, answer in REFERENCES.items():
        getattr(unittests, name)(*answer)
    assert _draw_all() == expected  # grading did not shift the learner's random streams
    assert torch.get_num_threads() == threads
