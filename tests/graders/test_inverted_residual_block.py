"""Grader of notebook 02 (``test_block``) against the answers in mutants_inverted_residual_block."""

import mutants_inverted_residual_block as m
from harness import Grader, grader_tests

from helper_utils.reference import InvertedResidualBlock

GRADERS = {"test_block": Grader(InvertedResidualBlock, m.CORRECT, m.STUBS, m.MUTANTS)}
globals().update(grader_tests(GRADERS))


def test_a_skip_taken_after_x_was_overwritten_is_named_as_such(capsys):
    import unittests

    for answer in (m.SkipAfterExpand, m.SkipAfterDepthwise):
        report = unittests.test_block(answer)
        failed = [r for r in report.results if not r.passed and not r.skipped]
        assert len(failed) == 1 and "take the skip from the block's input" in failed[0].hint, report.text()
        assert "missing residual add" not in report.text()
