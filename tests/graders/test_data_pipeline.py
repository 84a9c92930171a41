"""Graders of notebook 01 (``test_transforms``, ``test_class_weights``) against the answers in mutants_data_pipeline."""

import mutants_data_pipeline as m
from harness import Grader, grader_tests

from helper_utils.reference import compute_class_weights, train_transform, val_transform

GRADERS = {
    "test_transforms": Grader((train_transform, val_transform), m.TRANSFORMS_CORRECT, m.TRANSFORMS_STUBS,
                              m.TRANSFORMS_MUTANTS, call=lambda grader, pair: grader(*pair)),
    "test_class_weights": Grader(compute_class_weights, m.WEIGHTS_CORRECT, m.WEIGHTS_STUBS, m.WEIGHTS_MUTANTS),
}
globals().update(grader_tests(GRADERS))
