"""Stop a notebook cell with one line while an exercise it needs is unfinished.

A cell that runs an exercise's answer starts with ``unittests.require("compute_class_weights")``.
While the answer is still the exercise's stub, or its cell has not run, the cell stops right there
with one line naming the exercise and the section that teaches it, instead of a traceback from
deep inside a demo (``'NoneType' object is not iterable``) and before any training starts. A
finished answer passes in a fraction of a second and changes nothing: the learner's code is what
runs after it, right or wrong.

The check is the graders' own: every grader's first case recognises the untouched stub
(:func:`unittests.framework.require_answer`), and :func:`unittests.framework.placeholder_probe`
runs only that case. The section comes from the solution notebooks (``helper_utils.reference.SECTIONS``,
written by ``make release``); the exercise behind each name from :mod:`unittests.grading.points`.
"""

from __future__ import annotations

import importlib
import re
import sys

from helper_utils.reference import SECTIONS
from unittests.framework import placeholder_probe
from unittests.grading.points import EXERCISES, Exercise

__all__ = ["UnfinishedExercise", "require"]


class UnfinishedExercise(Exception):
    """A cell needs an exercise that is not written (or not run) yet.

    IPython shows it as its one-line message, without a traceback: the message says all there is to do.
    """

    def _render_traceback_(self) -> list[str]:  # IPython's hook for exceptions that format themselves
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def require(*names: str, namespace: dict | None = None) -> None:
    """Raise :class:`UnfinishedExercise` when an exercise answer among ``names`` is still its stub or undefined.

    Args:
        names: the names an exercise cell defines, e.g. ``"train_transform", "val_transform"``.
        namespace: where to look them up; by default the caller's globals (a notebook's namespace).

    Raises:
        UnfinishedExercise: for the first of ``names`` that is not finished, naming its section.
        ValueError: a name that no exercise defines.
    """
    namespace = sys._getframe(1).f_globals if namespace is None else namespace
    for name in names:
        exercise = _exercise_defining(name)
        where = _where(SECTIONS.get(name, ""))
        not_run = [n for n in exercise.defines if n not in namespace]
        if not_run:
            raise UnfinishedExercise(f"run the cell of `{not_run[0]}` ({where}) first, then this one again")
        grader = getattr(importlib.import_module("unittests"), exercise.grader)
        with placeholder_probe():
            report = grader(*(namespace[n] for n in exercise.defines))
        if report.placeholder:
            raise UnfinishedExercise(f"write `{report.placeholder}` ({where}) and run its cell first, "
                                     f"then this one again")


def _exercise_defining(name: str) -> Exercise:
    for exercise in EXERCISES:
        if name in exercise.defines:
            return exercise
    known = ", ".join(n for e in EXERCISES for n in e.defines)
    raise ValueError(f"{name!r} is not defined by an exercise; the exercises define: {known}")


def _where(heading: str) -> str:
    """``"section 6"`` from the heading ``"6. Exercise: class weights"`` (the number is what a reader looks for)."""
    numbered = re.match(r"(\d+)\.\s", heading)
    if numbered:
        return f"section {numbered.group(1)}"
    return f'section "{heading}"' if heading else "its exercise"
