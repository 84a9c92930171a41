"""Graders of notebook 05 (``test_siamese_encoder``, ``test_siamese_network``) against the answers in
mutants_siamese_training."""

import mutants_siamese_training as m
from harness import Grader, grader_tests

from helper_utils.reference import SiameseEncoder, SiameseNetwork

GRADERS = {
    "test_siamese_encoder": Grader(SiameseEncoder, m.ENCODER_CORRECT, m.ENCODER_STUBS, m.ENCODER_MUTANTS),
    "test_siamese_network": Grader(SiameseNetwork, m.NETWORK_CORRECT, m.NETWORK_STUBS, m.NETWORK_MUTANTS),
}
globals().update(grader_tests(GRADERS))

HINTS = [  # (grader, mutant, words its hint must say)
    ("test_siamese_encoder", m.MaxPoolEncoder, "not max pooling"),
    ("test_siamese_encoder", m.CopiesBackboneEncoder, "not a copy"),
    ("test_siamese_encoder", m.FixedKernelEncoder, "AdaptiveAvgPool2d(1)"),
    ("test_siamese_encoder", m.FrozenBackboneEncoder, "requires_grad=False"),
    ("test_siamese_network", m.SwappedOrder, "in that order"),
    ("test_siamese_network", m.NormalisesForwardOnly, "no normalisation"),
]


def test_mutant_hints_name_the_mistake(capsys):
    import unittests

    for grader, answer, words in HINTS:
        report = getattr(unittests, grader)(answer)
        hints = " | ".join(r.hint for r in report.results if not r.passed)
        assert words in hints, f"{grader} on {answer.__name__}: {hints}"


def test_outputs_in_another_order_are_told_the_order_not_a_copy(capsys):
    import unittests

    for answer in (m.SwappedOrder, m.RotatedOrder):
        report = unittests.test_siamese_network(answer)
        hints = [r.hint for r in report.results if not r.passed]
        assert hints and all("(anchor, positive, negative)" in hint for hint in hints), hints
        assert not any("cop" in hint for hint in hints), hints
