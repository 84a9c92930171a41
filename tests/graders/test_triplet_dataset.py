"""Grader of notebook 04 (``test_triplet_dataset``) against the answers in mutants_triplet_dataset."""

import mutants_triplet_dataset as m
from harness import Grader, grader_tests, hint_tests

from helper_utils.reference import TripletDataset

GRADERS = {"test_triplet_dataset": Grader(TripletDataset, m.CORRECT, m.STUBS, m.MUTANTS)}
globals().update(grader_tests(GRADERS))

HINTS = [  # mutants whose hint must say what is wrong, as the learner reads it
    ("test_triplet_dataset", m.PositiveFromAnotherClass, "positive drawn from another class"),
    ("test_triplet_dataset", m.NegativeFromAnchorClass, "negative drawn from anchor's class"),
    ("test_triplet_dataset", m.PositiveMayBeAnchor, "positive can be the anchor itself"),
    ("test_triplet_dataset", m.LenTimesThree, "__len__ should equal the wrapped dataset's"),
    ("test_triplet_dataset", m.AssumesSevenClasses, "don't hard-code the number of classes"),
    ("test_triplet_dataset", m.LabelsThroughGetitem, "build the label map from dataset.targets"),
    ("test_triplet_dataset", m.OtherAttributeNames, "self.label_to_indices"),
]
globals().update(hint_tests(HINTS))
