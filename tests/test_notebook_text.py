"""What the solution notebooks tell the learner about their graders matches the graders.

Every "Expected output" block names the real number of checks (no "All N tests passed"
placeholder), that number is the count the grader runs on the reference answer, and the
output committed under a grader cell (nbval compares it) is the grader's report on the reference.
"""

import contextlib
import io
import re

import nbformat
import pytest

import helper_utils.reference
import unittests
from tools import release

SOLUTIONS = sorted(release.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
PLACEHOLDER = re.compile(r"All\s+(?!\d+\s)\S+\s+tests?\s+passed")
EXPECTED = re.compile(r"\*\*Expected output\*\*.*?```\s*\n(.*?)\n```", re.DOTALL)


def _grader_cells(path):
    """(grader cell, the markdown cell closest before it) for every grader cell of a notebook."""
    cells = nbformat.read(path, as_version=4).cells
    found = []
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and "grader" in cell.metadata.get("tags", []):
            markdown = next((c for c in reversed(cells[:index]) if c.cell_type == "markdown"), None)
            found.append((cell, markdown))
    return found


def _reference_report(source):
    namespace = {"unittests": unittests, **{name: getattr(helper_utils.reference, name)
                                             for name in helper_utils.reference.__all__}}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = eval(compile(source, "grader cell", "eval"), namespace)
    return report, out.getvalue()


GRADED = [pytest.param(path, index, id=f"{path.stem}-{index}") for path in SOLUTIONS
          for index in range(len(_grader_cells(path)))]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_no_placeholder_test_count(path):
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        match = PLACEHOLDER.search(cell.source)
        assert not match, f"{path.name}, cell {index}: {match.group(0)!r} (write the real number of checks)"


@pytest.mark.parametrize("path, index", GRADED)
def test_expected_output_names_the_graders_real_count(path, index, monkeypatch):
    monkeypatch.delenv(unittests.STRICT_ENV, raising=False)
    cell, markdown = _grader_cells(path)[index]
    report, _ = _reference_report(cell.source)
    assert report, f"{cell.source} fails on the reference answer"
    expected = EXPECTED.search(markdown.source if markdown is not None else "")
    assert expected, f"{path.name}: no **Expected output** block before `{cell.source.strip()}`"
    assert expected.group(1).strip() == report.summary(), (
        f"{path.name}, `{cell.source.strip()}`: the notebook says {expected.group(1).strip()!r}, "
        f"the grader says {report.summary()!r}")


@pytest.mark.parametrize("path, index", GRADED)
def test_committed_grader_output_is_the_report_on_the_reference(path, index, monkeypatch):
    monkeypatch.delenv(unittests.STRICT_ENV, raising=False)
    cell, _ = _grader_cells(path)[index]
    if release.CHECK_TAG not in cell.metadata.get("tags", []):
        pytest.skip("output not committed")
    _, printed = _reference_report(cell.source)
    committed = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    assert committed == printed, f"{path.name}, `{cell.source.strip()}`: committed output is stale"
