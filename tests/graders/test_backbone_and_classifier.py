"""Graders of notebook 03 (``test_backbone``, ``test_classifier``) against the answers in
mutants_backbone_and_classifier."""

import mutants_backbone_and_classifier as m
from harness import Grader, grader_tests

from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier
from helper_utils.training import count_parameters

GRADERS = {
    "test_backbone": Grader(MobileNetBackbone, m.BACKBONE_CORRECT, m.BACKBONE_STUBS, m.BACKBONE_MUTANTS),
    "test_classifier": Grader(MobileNetLikeClassifier, m.CLASSIFIER_CORRECT, m.CLASSIFIER_STUBS,
                              m.CLASSIFIER_MUTANTS),
}
globals().update(grader_tests(GRADERS))


def test_reference_parameter_counts_match_the_course():
    assert count_parameters(MobileNetBackbone()) == 32_584
    assert count_parameters(MobileNetLikeClassifier()) == 33_039
