"""Grader of notebook 04 (``test_triplet_dataset``) against the answers in mutants_triplet_dataset."""

import mutants_triplet_dataset as m
from harness import Grader, grader_tests

from helper_utils.reference import TripletDataset

GRADERS = {"test_triplet_dataset": Grader(TripletDataset, m.CORRECT, m.STUBS, m.MUTANTS)}
globals().update(grader_tests(GRADERS))

HINTS = [  # mutants whose hint must say what is wrong, as the learner reads it
    (m.PositiveFromAnotherClass, "positive drawn from another class"),
    (m.NegativeFromAnchorClass, "negative drawn from anchor's class"),
    (m.PositiveMayBeAnchor, "positive can be the anchor itself"),
    (m.LenTimesThree, "__len__ should equal the wrapped dataset's"),
    (m.AssumesSevenClasses, "don't hard-code the number of classes"),
    (m.LabelsThroughGetitem, "build the label map from dataset.targets"),
    (m.OtherAttributeNames, "self.label_to_indices"),
]


def test_mutant_hints_name_the_mistake(capsys):
    import unittests

    for answer, words in HINTS:
        report = unittests.test_triplet_dataset(answer)
        hints = " | ".join(r.hint for r in report.results if not r.passed)
        assert words in hints, f"{answer.__name__}: {hints}"
