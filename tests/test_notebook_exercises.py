"""Every grader cell, run on the exercise cells of each notebook: passes on the solution, fails cleanly on the stub.

Only the cells tagged ``export``, ``setup`` and ``exercise`` run before the grader cells (no training, no
data loading), so this takes seconds. nbval runs the whole solution notebooks separately.
"""

import contextlib
import io

import nbformat
import pytest

from tools import release

SOLUTIONS = sorted(release.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def _has_tag(path, tag):
    return any(tag in cell.metadata.get("tags", []) for cell in nbformat.read(path, as_version=4).cells)


EXERCISED = [path for path in SOLUTIONS if _has_tag(path, "exercise")]  # the going-further notebooks may have none


def _graded_cells(path):
    nb = nbformat.read(path, as_version=4)
    return [cell for cell in nb.cells if cell.cell_type == "code"
            and {"export", "setup", "exercise", "grader"} & set(cell.metadata.get("tags", []))]


def _run(path, monkeypatch):
    """Run setup and exercise cells, then return the report of every grader cell."""
    monkeypatch.delenv("UNITTESTS_STRICT", raising=False)
    monkeypatch.chdir(path.parent)
    namespace: dict = {"__name__": "__main__"}
    reports = []
    for cell in _graded_cells(path):
        tags = cell.metadata.get("tags", [])
        with contextlib.redirect_stdout(io.StringIO()):
            if "grader" in tags:
                reports.append((cell.source.strip(), eval(compile(cell.source, path.name, "eval"), namespace)))
            else:
                exec(compile(cell.source, path.name, "exec"), namespace)
    return reports


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_an_exercise_comes_with_a_grader(path):
    assert _has_tag(path, "exercise") <= _has_tag(path, "grader"), f"{path.name} has an exercise but no grader cell"


@pytest.mark.parametrize("path", EXERCISED, ids=lambda p: p.stem)
def test_graders_pass_on_the_solution(path, monkeypatch):
    reports = _run(path, monkeypatch)
    assert reports, f"{path.name} has no grader cell"
    for call, report in reports:
        assert report, f"{call} fails on the solution:\n{report}"


@pytest.mark.parametrize("path", EXERCISED, ids=lambda p: p.stem)
def test_graders_fail_cleanly_on_the_learner_stub(path, monkeypatch):
    learner = release.NOTEBOOKS / path.name
    reports = _run(learner, monkeypatch)  # an exception here means the stub itself does not run
    for call, report in reports:
        assert not report, f"{call} passes on the empty stub"
        assert report.summary().endswith("failed")
        # one message that names the exercise to fill in, not one failure per case
        assert report.placeholder, f"{call} does not recognise the untouched stub:\n{report}"
        assert report.text().count("TODO") == 1 and "FAIL" not in report.text(), report.text()
