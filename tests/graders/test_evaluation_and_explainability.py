"""Grader of notebook 07 (``test_grad_cam``) against the answers in mutants_evaluation_and_explainability."""

import random

import mutants_evaluation_and_explainability as m
import numpy as np
import torch
from harness import Grader, grader_tests, hint_tests

import unittests
from helper_utils.reference import grad_cam

GRADERS = {"test_grad_cam": Grader(grad_cam, m.CORRECT, m.STUBS, m.MUTANTS)}
globals().update(grader_tests(GRADERS))


globals().update(hint_tests([("test_grad_cam", mutant, words) for mutant, words in m.HINTS]))


def test_grader_survives_an_answer_that_raises(capsys):
    def broken(activations, gradients, size=(64, 64)):
        raise RuntimeError("shape '[2, 5]' is invalid for input of size 3")

    report = unittests.test_grad_cam(broken)
    assert not report and "RuntimeError" in report.text()


def test_grader_leaves_random_state_and_threads_alone(capsys):
    threads = torch.get_num_threads()
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    unittests.test_grad_cam(grad_cam)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert torch.get_num_threads() == threads
