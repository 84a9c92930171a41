"""Grader of notebook 02 (``test_block``) against the answers in mutants_inverted_residual_block."""

import mutants_inverted_residual_block as m
from harness import Grader, grader_tests

from helper_utils.reference import InvertedResidualBlock

GRADERS = {"test_block": Grader(InvertedResidualBlock, m.CORRECT, m.STUBS, m.MUTANTS)}
globals().update(grader_tests(GRADERS))
