"""The release command: learner notebooks are generated from the solutions and never drift."""

import nbformat
import pytest

from tools import release

SOLUTION = '''class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        ### START CODE HERE ###
        ### STUB: self.conv = None  # a 3x3 convolution
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        ### END CODE HERE ###

    def forward(self, x):
        ### START CODE HERE ###
        ### STUB: out = None
        out = self.conv(x)
        out = out + x
        ### END CODE HERE ###
        return out'''


def test_region_becomes_scaffold():
    learner = release.make_learner_source(SOLUTION)
    assert "nn.Conv2d" not in learner and "out + x" not in learner
    assert "        self.conv = None  # a 3x3 convolution" in learner.splitlines()
    assert learner.count("# YOUR CODE HERE") == 2
    assert learner.count(release.START) == 2 and learner.count(release.END) == 2
    compile(learner, "stub", "exec")  # the stub is valid Python


@pytest.mark.parametrize("broken,message", [
    (f"{release.START}\nx = 1", "START without END"),
    (f"x = 1\n{release.END}", "END without START"),
    (f"{release.START}\n{release.START}\n{release.END}", "START inside"),
])
def test_unpaired_markers_are_reported(broken, message):
    with pytest.raises(release.ReleaseError, match=message):
        release.make_learner_source(broken)


def _notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(SOLUTION, metadata={"tags": ["exercise"], "collapsed": True})
    code.outputs = [nbformat.v4.new_output("stream", text="hello")]
    code.execution_count = 3
    check = nbformat.v4.new_code_cell("unittests.test_block(Block)", metadata={"tags": ["nbval-check-output"]})
    check.outputs = [nbformat.v4.new_output("stream", text="All 3 tests passed\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), code, check]
    nb.metadata["widgets"] = {"state": {}}
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nbformat.write(nb, solutions / "01_demo.ipynb")
    return solutions


def test_release_writes_clean_learner_copy_and_check_detects_drift(tmp_path):
    solutions = _notebook(tmp_path)
    assert release.release(solutions, tmp_path) == [tmp_path / "01_demo.ipynb"]
    learner = nbformat.read(tmp_path / "01_demo.ipynb", as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in learner.cells if c.cell_type == "code")
    assert "nn.Conv2d" not in learner.cells[1].source and "widgets" not in learner.metadata
    assert release.release(solutions, tmp_path, check=True) == []
    (tmp_path / "01_demo.ipynb").write_text((tmp_path / "01_demo.ipynb").read_text().replace("None", "42"))
    assert release.release(solutions, tmp_path, check=True) == [tmp_path / "01_demo.ipynb"]


def test_clean_keeps_only_checked_outputs(tmp_path):
    solutions = _notebook(tmp_path)
    assert release.clean_solutions(solutions, check=True) == [solutions / "01_demo.ipynb"]
    release.clean_solutions(solutions)
    nb = nbformat.read(solutions / "01_demo.ipynb", as_version=4)
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None and nb.cells[1].metadata == {"tags": ["exercise"]}
    assert nb.cells[2].outputs[0]["text"] == "All 3 tests passed\n"
    assert nb.cells[2].execution_count == 1  # nbval refuses stored outputs without one
    assert release.clean_solutions(solutions, check=True) == []


def test_committed_learner_notebooks_are_up_to_date():
    if not list(release.SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        pytest.skip("no solution notebooks yet")
    assert release.release(check=True) == [], "run `make release` and commit the learner notebooks"
    assert release.clean_solutions(check=True) == [], "run `make release` to strip the solution notebooks"


def test_learner_notebooks_hold_no_solution_code():
    for path in release.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"):
        solution = nbformat.read(path, as_version=4)
        learner = nbformat.read(release.NOTEBOOKS / path.name, as_version=4)
        for s_cell, l_cell in zip(solution.cells, learner.cells):
            if release.START not in s_cell.source:
                continue
            answer_lines = _region_lines(s_cell.source)
            leaked = [line for line in answer_lines if line in l_cell.source.splitlines()]
            assert not leaked, f"{path.name}: solution lines in the learner copy: {leaked}"


def _region_lines(source):
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() == release.START:
            inside = True
        elif line.strip() == release.END:
            inside = False
        elif inside and line.strip() and not line.strip().startswith(release.STUB):
            lines.append(line)
    return lines


@pytest.mark.parametrize("typo", [
    "###START CODE HERE###", "### START CODE HERE", "### START CODE HERE ##", "# START CODE HERE",
    "### start code here ###",
    "### END CODE HERE", "###END CODE HERE###", "### END CODE HERE ####", "## END CODE HERE ##",
    "###STUB: x = None", "### STUB x = None", "# STUB: x = None",
])
def test_misspelled_markers_are_refused_with_notebook_cell_and_line(typo, tmp_path):
    source = f"x = 0\n{typo}\ny = 1"
    with pytest.raises(release.ReleaseError, match=r"02_demo.ipynb, cell 1, line 2: .*marker"):
        release.make_learner_source(source, "02_demo.ipynb, cell 1")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell(source)]
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nbformat.write(nb, solutions / "02_demo.ipynb")
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(release.ReleaseError, match=r"02_demo.ipynb, cell 1, line 2"):
        release.release(solutions, target)
    assert not (target / "02_demo.ipynb").exists()  # no learner copy with the solution left in


def test_exact_markers_and_ordinary_comments_are_accepted():
    source = SOLUTION + "\n# start the code here with the stem, then the blocks\nstub = 1  # STUB is a word"
    release.make_learner_source(source)


def _imports_through_the_package(source: str) -> list[str]:
    """The imports of ``source`` that go through ``helper_utils``'s lazy loader or the reference package."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in ("helper_utils", "helper_utils.reference"):
            found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name in ("helper_utils", "helper_utils.reference")]
    return found


def test_reference_modules_import_what_they_need_directly():
    """A reference module loads while helper_utils.reference is half-loaded: never go back through it."""
    for path in sorted(release.REFERENCE.glob("*.py")):
        if path.name != "__init__.py":
            assert _imports_through_the_package(path.read_text()) == [], path.name


def test_the_check_catches_an_import_through_the_package():
    assert _imports_through_the_package("from helper_utils import InvertedResidualBlock") != []
    assert _imports_through_the_package("import helper_utils.reference") != []
    assert _imports_through_the_package("from helper_utils.reference.x import Y\nimport torch") == []


def test_export_imports_are_rewritten_to_the_defining_modules():
    source = ("import torch\n"
              "from helper_utils import (Block as B,  # notebook 02's block\n"
              "                          get_device)  # and the device\n"
              "x = 1")
    out = release._direct_imports(source, {"Block": "helper_utils.reference.block"}, "demo")
    assert out.splitlines() == ["import torch",
                                "from helper_utils.reference.block import Block as B",
                                "from helper_utils.device import get_device  # and the device",
                                "x = 1"]
    with pytest.raises(release.ReleaseError, match="Nowhere"):
        release._direct_imports("from helper_utils import Nowhere", {}, "demo")


def test_each_answer_is_mapped_to_the_heading_of_the_section_teaching_it():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\n## 1. Intro"),
                nbformat.v4.new_markdown_cell("## 2. Exercise: a block (about 4 lines)\n\n### Details"),
                nbformat.v4.new_code_cell(SOLUTION, metadata={"tags": ["exercise"]}),
                nbformat.v4.new_code_cell("helper = 1", metadata={"tags": ["export"]})]
    assert release.exercise_sections(nb) == {"Block": "2. Exercise: a block"}


# ---------------------------------------------------------------------------------------
# The hand-in note
# ---------------------------------------------------------------------------------------

def test_every_graded_learner_notebook_ends_with_the_one_hand_in_note():
    from unittests.grading.points import EXERCISES

    graded = {f"{e.notebook}.ipynb" for e in EXERCISES}
    with_note = set()
    for path in sorted(release.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        notes = [c for c in cells if release.HAND_IN_TAG in c.metadata.get("tags", [])]
        if notes:
            with_note.add(path.name)
            assert notes == [cells[-1]] and cells[-1].cell_type == "markdown", f"{path.name}: the note is not last"
            assert cells[-1].source == release.hand_in_note(path.name)  # from the one template, with its name
        solution = nbformat.read(release.SOLUTIONS / path.name, as_version=4)
        assert not any(release.HAND_IN_TAG in c.metadata.get("tags", []) for c in solution.cells)  # generated only
    assert with_note == graded


def test_hand_in_note_says_what_the_class_grader_does():
    from unittests.grading.cells import RUN_TAGS

    note = release.hand_in_note("02_inverted_residual_block.ipynb")
    assert "`02_inverted_residual_block.ipynb`" in note and "keep its file name" in note
    assert release.START in note and "inside the exercise cell" in note
    assert "exercise" in RUN_TAGS and not {"grader", "colab-setup", release.HAND_IN_TAG} & set(RUN_TAGS)


def test_release_appends_the_note_only_to_notebooks_with_exercises(tmp_path):
    solutions = _notebook(tmp_path)
    plain = nbformat.v4.new_notebook()
    plain.cells = [nbformat.v4.new_markdown_cell("# No exercise"), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(plain, solutions / "08_plain.ipynb")
    release.release(solutions, tmp_path)
    demo = nbformat.read(tmp_path / "01_demo.ipynb", as_version=4)
    assert demo.cells[-1].source == release.hand_in_note("01_demo.ipynb") and len(demo.cells) == 4
    assert len(nbformat.read(tmp_path / "08_plain.ipynb", as_version=4).cells) == 2
    # an edited note is drift like any other
    edited = (tmp_path / "01_demo.ipynb").read_text().replace("keep its file name", "rename it freely")
    (tmp_path / "01_demo.ipynb").write_text(edited)
    assert release.release(solutions, tmp_path, check=True) == [tmp_path / "01_demo.ipynb"]
