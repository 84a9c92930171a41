"""The teaching layer of the solution notebooks stays true: line counts, Try it sections, diagrams, learner wording."""

import re

import nbformat
import pytest

from tools import release

CORE_WITH_TRY_IT = ["01_data_pipeline", "02_inverted_residual_block", "03_backbone_and_classifier",
                    "04_triplet_dataset", "05_siamese_training", "06_visual_search", "07_evaluation_and_explainability"]
DIAGRAMS = {"02_inverted_residual_block": "diagrams.inverted_residual_block(",
            "03_backbone_and_classifier": "diagrams.backbone(",
            "04_triplet_dataset": "diagrams.triplet_geometry(",
            "06_visual_search": "diagrams.search_pipeline("}
# words about how the kit is made, not about what the learner sees
INTERNAL = re.compile(r"\b(the issue|budget:|target of|spec(ification)?s?\b|\bCI\b)", re.IGNORECASE)
_LINES = re.compile(r"\(about (\d+) lines?\)")


def _notebook(stem):
    return nbformat.read(release.SOLUTIONS / f"{stem}.ipynb", as_version=4)


def _solution_lines(source):
    """Code lines between the markers that are neither a stub nor a comment nor blank."""
    count, inside = 0, False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == release.START:
            inside = True
        elif stripped == release.END:
            inside = False
        elif inside and stripped and not stripped.startswith("#"):
            count += 1
    return count


def _exercises(nb):
    """(heading markdown, solution line count) for each exercise cell, the heading being the nearest before it."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "exercise" in cell.metadata.get("tags", []):
            heading = next(c for c in reversed(nb.cells[:i]) if c.cell_type == "markdown" and "Exercise" in c.source)
            found.append((heading.source, _solution_lines(cell.source)))
    return found


@pytest.mark.parametrize("stem", ["01_data_pipeline", "02_inverted_residual_block", "03_backbone_and_classifier",
                                  "04_triplet_dataset", "05_siamese_training", "06_visual_search", "07_evaluation_and_explainability"])
def test_each_exercise_says_about_how_many_lines_its_solution_has(stem):
    exercises = _exercises(_notebook(stem))
    assert exercises
    for heading, lines in exercises:
        said = _LINES.search(heading)
        assert said, f"{stem}: no '(about N lines)' in {heading.splitlines()[0]!r}"
        assert int(said.group(1)) == lines, f"{stem}: {heading.splitlines()[0]!r} but the solution has {lines}"


@pytest.mark.parametrize("stem", CORE_WITH_TRY_IT)
def test_core_notebooks_end_with_three_to_five_experiments(stem):
    last = _notebook(stem).cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Try it")
    items = re.findall(r"^\d+\. ", last.source, flags=re.MULTILINE)
    assert 3 <= len(items) <= 5


@pytest.mark.parametrize("stem, call", sorted(DIAGRAMS.items()))
def test_each_concept_diagram_is_drawn_in_its_notebook(stem, call):
    assert any(call in cell.source for cell in _notebook(stem).cells if cell.cell_type == "code")


def test_notebook_01_introduces_the_tutorial_and_links_the_dataset():
    text = "\n".join(cell.source for cell in _notebook("01_data_pipeline").cells[:3])
    assert "tutorial" in text and "https://github.com/alexeygrigorev/clothing-dataset-small" in text


@pytest.mark.parametrize("path", sorted(release.SOLUTIONS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_speak_to_learners_only(path):
    for cell in nbformat.read(path, as_version=4).cells:
        found = INTERNAL.search(cell.source)
        assert not found, f"{path.name}: {found.group(0)!r} in {cell.source[:80]!r}"
