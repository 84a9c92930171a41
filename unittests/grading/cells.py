"""Which cells of a notebook run when it is graded, and what a cell defines.

The class grader runs a submission's set-up cells (tags ``export`` and ``setup``) and its
exercise cells (``exercise``), never the training cells or the Colab cell. ``tools.release``
uses :func:`defined_names` too: a reference module exports what its exercise cells define.
"""

from __future__ import annotations

import ast
import gc
from pathlib import Path

from helper_utils.paths import NOTEBOOKS

__all__ = ["RUN_TAGS", "defined_names", "learner_cells"]

RUN_TAGS = ("export", "setup", "exercise")  # the cells of a submission that run; never the training cells
EXERCISE_MARKER = "### START CODE HERE ###"  # still in an exercise cell whose tags another editor lost


def defined_names(source: str) -> list[str]:
    """Top-level names a cell binds with ``def``, ``class`` or an assignment, in order.

    Tuple and starred targets count (``a, (b, *c) = ...`` binds ``a``, ``b`` and ``c``), and so
    does an annotated assignment with a value (``x: int = 1``); an annotation alone, an augmented
    assignment, ``obj.attr = ...`` and ``table[key] = ...`` bind no new name. Imports are not
    counted: they bring names in, the cell does not define them.

    Raises:
        SyntaxError: when ``source`` does not parse.
    """
    names: list[str] = []
    for node in _parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names += _bound(target)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            names += _bound(node.target)
    return list(dict.fromkeys(names))


def _parse(source: str) -> ast.Module:
    """``ast.parse`` with the garbage collector paused.

    On Python 3.11.7, a finaliser that runs during the parse and parses too (a traceback it
    formats) breaks the parse in progress with "SystemError: AST constructor recursion depth
    mismatch" (CPython gh-106905); the grader, with its kernels' threads and tasks, met it.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if paused:
            gc.enable()


def _bound(target: ast.expr) -> list[str]:
    """The names an assignment target binds (attributes and subscripts bind none)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _bound(element)]
    if isinstance(target, ast.Starred):
        return _bound(target.value)
    return []


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []) or [])


def _kit_setup_cells(notebook: str, notebooks: Path = NOTEBOOKS) -> list[str]:
    """The kit's set-up cells of ``notebook``; none when the kit is installed without its notebooks."""
    import nbformat

    path = notebooks / f"{notebook}.ipynb"
    if not path.is_file():
        return []
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and _tags(c) & {"export", "setup"}]


def learner_cells(nb, notebook: str, exercises) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(kind, source, exercises it defines)`` of the submission's cells that run, in its order.

    ``kind`` is ``"setup"`` or ``"exercise"``. When another editor lost the cell tags, the kit's
    own set-up cells stand in, and the cells that still hold the exercise markers are the exercises.
    """
    code = [c for c in nb.cells if c.get("cell_type") == "code"]
    setup = [c.source for c in code if _tags(c) & {"export", "setup"}]
    if not setup:
        setup = _kit_setup_cells(notebook)
    exercise_cells = [c for c in code if "exercise" in _tags(c)]
    if not exercise_cells:
        exercise_cells = [c for c in code if EXERCISE_MARKER in c.source]
    cells: list[tuple[str, str, tuple[str, ...]]] = [("setup", s, ()) for s in setup]
    for cell in exercise_cells:
        try:
            names = set(defined_names(cell.source))
        except SyntaxError:  # it still runs, and the kernel reports the error
            names = set()
        owners = tuple(e.name for e in exercises if names & set(e.defines))
        cells.append(("exercise", cell.source, owners))
    return cells
