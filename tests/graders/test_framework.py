"""The grader framework itself, and what every grader owes the learner (one test over all of them)."""

import random
import time

import numpy as np
import pytest
import torch

import helper_utils as ref
import unittests
from unittests.framework import Case, CaseResult, GraderFailed, check, grade

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
    "test_pairwise_distances": (ref.pairwise_distances,),
    "test_batch_hard_triplet_loss": (ref.batch_hard_triplet_loss,),
    "test_recall_at_k": (ref.recall_at_k,),
    "test_projection_head": (ref.ProjectionHead,),
}
LAYER_GRADERS = {"test_block", "test_backbone", "test_classifier", "test_siamese_encoder"}
_LAYER_HINT = "check its in/out channels and stride"


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
    assert all(isinstance(r, CaseResult) for r in report.results)
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


# ----------------------------------------------------------------------------- an untouched exercise


def test_an_untouched_placeholder_gets_one_message_naming_the_exercise(capsys, monkeypatch):
    from unittests.framework import placeholder

    cases = [Case("Block is defined", lambda: placeholder("Block"), required=True)]
    cases += [Case(f"check {i}", lambda: None) for i in range(12)]
    report = grade("demo", cases)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert not report and report.summary().endswith("failed") and lines[-1] == report.summary()
    assert len(lines) <= 4, out  # the grader's name, the one message (and its hint), the summary
    assert "Block" in out and "placeholder" in out and "not run" not in out and "check 3" not in out
    monkeypatch.setenv("UNITTESTS_STRICT", "1")
    with pytest.raises(GraderFailed, match="failed"):
        grade("demo", cases, verbose=False)


def test_checks_skipped_after_a_required_failure_collapse_into_one_line(capsys):
    cases = [Case("first", _failing_case, required=True)] + [Case(f"check {i}", lambda: None) for i in range(5)]
    report = grade("demo", cases)
    out = capsys.readouterr().out
    assert not report and out.count("FAIL") == 1 and "SKIP" not in out
    assert "5 more checks not run: fix the first failure above" in out
    assert "check 2" not in out


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_grader_gives_a_none_placeholder_one_message(name, capsys):
    report = getattr(unittests, name)(*[None] * len(REFERENCES[name]))
    out = capsys.readouterr().out
    assert not report and report.summary().endswith("failed")
    assert out.count("FAIL") + out.count("TODO") == 1, out
    assert "not run" not in out


# ----------------------------------------------------------------------------- learner code that fights back


def _retry_forever():
    while True:
        try:
            sum(range(1000))
        except BaseException:  # noqa: BLE001  (what a learner's retry loop does)
            pass


def _retry_forever_bare():
    while True:
        try:
            while True:
                pass
        except:  # noqa: E722
            pass


@pytest.mark.parametrize("loop", [_retry_forever, _retry_forever_bare])
def test_a_loop_that_swallows_the_time_limit_still_ends_with_a_failed_case(loop):
    start = time.perf_counter()
    report = grade("demo", [Case("loop", loop), Case("after", lambda: None)], time_limit_s=0.3, verbose=False)
    assert time.perf_counter() - start < 5
    assert not report and "took longer than 0.3 s" in report.results[0].got
    assert grade("demo", [Case("ok", lambda: sum(range(10 ** 5)))], verbose=False)  # still usable afterwards
    import signal
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_sys_exit_in_learner_code_is_a_failed_case_with_its_message():
    import sys

    report = grade("demo", [Case("exits", lambda: sys.exit("bye")), Case("after", lambda: None)], verbose=False)
    assert not report and report.results[1].passed
    assert report.results[0].got == "SystemExit: bye" and "exit" in report.results[0].hint


def test_a_real_keyboard_interrupt_is_not_swallowed():
    def interrupted():
        raise KeyboardInterrupt

    with torch.no_grad(), pytest.raises(KeyboardInterrupt):
        grade("demo", [Case("interrupted", interrupted)], verbose=False)


def _global_state():
    return (torch.get_default_dtype(), torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled(),
            torch.is_anomaly_enabled(), torch.get_num_threads())


def _meddle():
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    torch.autograd.set_detect_anomaly(True)
    torch.set_num_threads(3)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)


def test_global_state_left_by_learner_code_is_restored_after_the_grader():
    _seed_all()
    expected_draws = _draw_all()
    _seed_all()
    before = _global_state()
    report = grade("demo", [Case("meddles", _meddle)], verbose=False)
    assert report and _global_state() == before
    assert _draw_all() == expected_draws


def test_cases_run_in_a_known_state_whatever_the_learner_left():
    seen = []

    def record():
        seen.append((torch.get_default_dtype(), torch.is_grad_enabled()))

    old_dtype = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        with torch.no_grad():
            report = grade("demo", [Case("meddles", _meddle), Case("records", record)], verbose=False)
            assert not torch.is_grad_enabled() and torch.get_default_dtype() == torch.float64  # theirs, back
    finally:
        torch.set_default_dtype(old_dtype)
    assert report and seen == [(torch.float32, True)]


def test_a_correct_block_passes_after_learner_code_turned_gradients_off():
    with torch.no_grad():
        assert unittests.test_block(ref.InvertedResidualBlock)


def _shape_error(*args, **kwargs):
    raise RuntimeError("The size of tensor a (5) must match the size of tensor b (14) at non-singleton dimension 1")


@pytest.mark.parametrize("name", sorted(set(REFERENCES) - LAYER_GRADERS - {"test_transforms"}))
def test_graders_of_exercises_that_are_not_layers_never_give_the_layer_hint(name, capsys):
    report = getattr(unittests, name)(_shape_error)
    hints = [r.hint for r in report.results if not r.passed]
    assert hints and not any(_LAYER_HINT in (hint or "") for hint in hints), hints


def test_only_a_grader_of_layers_reads_a_shape_error_as_a_layer_mistake():
    def raises():
        _shape_error()

    layer = grade("layers", [Case("forward", raises)], layers=True, verbose=False)
    other = grade("function", [Case("call", raises)], verbose=False)
    assert _LAYER_HINT in layer.results[0].hint
    assert _LAYER_HINT not in other.results[0].hint and "shapes" in other.results[0].hint


def test_a_graders_own_error_hint_comes_first_and_a_broken_one_is_ignored():
    def raises():
        _shape_error()

    def broken(error):
        raise KeyError("bug in the hint")

    own = grade("own", [Case("call", raises)], error_hint=lambda e: "compare labels[:, None]", verbose=False)
    assert own.results[0].hint == "compare labels[:, None]"
    fallback = grade("broken", [Case("call", raises)], error_hint=broken, verbose=False)
    assert fallback.results[0].hint and "Traceback" not in fallback.results[0].hint
