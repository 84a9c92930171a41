"""Which names a cell defines: one implementation for the class grader and ``tools.release``."""

import pytest

from unittests.grading.cells import defined_names


@pytest.mark.parametrize("source,names", [
    ("def f(): pass\nasync def g(): pass\nclass C: pass", ["f", "g", "C"]),
    ("x = 1\ny = z = 2", ["x", "y", "z"]),
    ("a, (b, *c) = 1, (2, 3)\n[d, e] = 4, 5", ["a", "b", "c", "d", "e"]),
    ("train_transform: object = None", ["train_transform"]),
    ("x: int", []),  # an annotation alone binds nothing
    ("x += 1", []),
    ("obj.attr = 1\ntable['key'] = 2\nobj.a, table[0] = 1, 2", []),
    ("import torch\nfrom helper_utils import InvertedResidualBlock", []),
    ("if True:\n    def nested(): pass", []),  # top level only
    ("f = 1\ndef f(): pass", ["f"]),  # once, in order
])
def test_defined_names(source, names):
    assert defined_names(source) == names


def test_a_cell_that_does_not_parse_raises():
    with pytest.raises(SyntaxError):
        defined_names("def broken(:")
