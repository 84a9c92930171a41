"""``unittests.require``: a cell that needs an unfinished exercise stops with one line naming it and its section."""

import random
import re
import time

import nbformat
import pytest
import torch

import unittests
from helper_utils.reference import SECTIONS
from tools import release
from unittests.framework import Case, check, grade, placeholder, placeholder_probe
from unittests.grading.points import EXERCISES

NOTEBOOKS = sorted({e.notebook for e in EXERCISES})


def _exercise_namespace(folder, notebook):
    """What a kernel holds after running the notebook's export and exercise cells (no data, no training)."""
    nb = nbformat.read(folder / f"{notebook}.ipynb", as_version=4)
    namespace: dict = {"__name__": "__main__"}
    for cell in nb.cells:
        if cell.cell_type == "code" and {"export", "exercise"} & set(cell.metadata.get("tags", [])):
            exec(compile(cell.source, notebook, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_untouched_exercise_stops_the_cell_with_one_line_naming_it_and_its_section(notebook, monkeypatch):
    monkeypatch.setenv("UNITTESTS_STRICT", "1")  # even in strict mode: the one line, never a grader failure
    namespace = _exercise_namespace(release.NOTEBOOKS, notebook)
    for exercise in (e for e in EXERCISES if e.notebook == notebook):
        for name in exercise.defines:
            with pytest.raises(unittests.UnfinishedExercise) as raised:
                unittests.require(name, namespace=namespace)
            lines = raised.value._render_traceback_()
            section = re.match(r"\d+", SECTIONS[name]).group()
            assert len(lines) == 1 and "\n" not in lines[0], lines
            assert re.search(rf"write `(.*` and `)?{name}`.* \(section {section}\) and run its cell first",
                             lines[0]), lines[0]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_finished_answers_pass_quietly_quickly_and_leave_the_random_streams_alone(notebook, capsys, monkeypatch):
    monkeypatch.setenv("UNITTESTS_STRICT", "1")
    namespace = _exercise_namespace(release.SOLUTIONS, notebook)
    names = [n for e in EXERCISES if e.notebook == notebook for n in e.defines]
    random.seed(5)
    torch.manual_seed(5)
    expected = random.random(), torch.rand(1).item()
    random.seed(5)
    torch.manual_seed(5)
    start = time.perf_counter()
    unittests.require(*names, namespace=namespace)
    assert time.perf_counter() - start < 2.0
    assert (random.random(), torch.rand(1).item()) == expected
    assert capsys.readouterr().out == ""


def test_an_exercise_cell_that_has_not_run_is_named_too():
    with pytest.raises(unittests.UnfinishedExercise, match=r"run the cell of `compute_class_weights` \(section 6\)"):
        unittests.require("compute_class_weights", namespace={})


def test_a_wrong_answer_is_not_an_unfinished_one():
    namespace = {"compute_class_weights": lambda targets, num_classes: torch.zeros(3)}  # wrong, but written
    unittests.require("compute_class_weights", namespace=namespace)


def test_a_name_no_exercise_defines_is_refused_with_the_allowed_names():
    with pytest.raises(ValueError, match="compute_class_weights"):
        unittests.require("compute_weights", namespace={})


def test_the_callers_globals_are_the_default_namespace():
    code = "train_transform = val_transform = None\nunittests.require('val_transform')"
    with pytest.raises(unittests.UnfinishedExercise, match="train_transform` and `val_transform"):
        exec(code, {"unittests": unittests})


def test_every_exercise_has_a_numbered_section():
    for exercise in EXERCISES:
        for name in exercise.defines:
            assert re.match(r"\d+\. ", SECTIONS.get(name, "")), f"{name}: no numbered section ({SECTIONS.get(name)!r})"


def test_the_probe_runs_only_the_first_case_prints_nothing_and_never_raises(capsys, monkeypatch):
    monkeypatch.setenv("UNITTESTS_STRICT", "1")
    ran = []
    cases = [Case("defined", lambda: ran.append(1)), Case("wrong", lambda: check(False, 1, 2))]
    with placeholder_probe():
        report = grade("demo", cases)
        stub = grade("demo", [Case("defined", lambda: placeholder("thing")), Case("more", lambda: ran.append(2))])
    assert ran == [1] and report and len(report.results) == 1
    assert stub.placeholder == "thing"
    assert capsys.readouterr().out == ""
