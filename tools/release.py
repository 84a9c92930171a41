"""Write the learner notebooks and the reference answers from the solution notebooks, and check them.

The solution notebooks in ``notebooks/solutions/`` are the one source of truth. In each
code cell, an exercise region looks like this::

    ### START CODE HERE ###
    ### STUB: self.expand = None  # 1x1 conv -> BatchNorm -> ReLU
    self.expand = nn.Sequential(...)
    ### END CODE HERE ###

The learner copy keeps the markers, a ``# YOUR CODE HERE`` line and the ``### STUB:`` lines
(prefix removed, indentation kept); the solution lines are dropped. Every output is cleared.

Every learner notebook with an exercise ends with the same short note on how to hand it in
(:func:`hand_in_note`, tag ``hand-in``), written here only, so that it cannot drift between notebooks.

The reference answers that later notebooks and the graders import are built from the same
cells, as d2l builds its library from ``#@save`` cells: the cells tagged ``exercise`` (with the
solution kept and the markers dropped), after the cells tagged ``export`` (the imports the
answers need), become ``helper_utils/reference/<notebook name>.py``, one module per notebook,
each with a header that names the notebook to edit. The package's ``SECTIONS`` records the
heading of the section that teaches each answer, so that a cell which needs an unfinished
exercise can name where to write it (``unittests.require``).

Usage::

    python -m tools.release           # write notebooks/NN_*.ipynb and helper_utils/reference/
    python -m tools.release --check   # exit 1 if a learner notebook or a reference module is stale,
                                      # or a launch link disagrees with the Colab cells (tools.publish)
    python -m tools.release --check --publish   # also exit 1 while the placeholder owner <org> is left
    python -m tools.release --clean   # strip solution notebooks (outputs kept on nbval-check cells)
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat

from helper_utils.cli import ArgumentParser, one_line
from helper_utils.paths import NOTEBOOKS, REPO, SOLUTIONS
from tools import publish
from unittests.grading.cells import defined_names

__all__ = ["START", "END", "STUB", "ReleaseError", "make_learner_source", "hand_in_note",
           "exercise_sections", "release", "main"]

START = "### START CODE HERE ###"
END = "### END CODE HERE ###"
STUB = "### STUB:"
CHECK_TAG = "nbval-check-output"  # the only cells whose outputs are committed (nbval compares them)
EXERCISE_TAG = "exercise"  # a cell with exercise regions: its solution becomes a reference answer
EXPORT_TAG = "export"  # a cell copied into the reference module as it is (the imports the answers use)
HAND_IN_TAG = "hand-in"  # the note on how to hand a notebook in, appended to every learner notebook with exercises
KEPT_METADATA = ("kernelspec", "language_info")

# What the class grader (unittests.grading) runs of a hand-in: the set-up cells, the exercise cells, then its own
# grader cells. A learner needs to know that, and to keep the file name the grader looks for.
HAND_IN = """## How to hand in

- Hand in this notebook as **`{name}`**: keep its file name (on Colab: File > Download > Download .ipynb).
- Only the exercise cells are graded. The grader runs the import cells at the top of the notebook, then each
  exercise cell (the cells with `### START CODE HERE ###`), then its own copy of the grader cells. No other
  cell runs: training and your own experiments are not seen.
- A helper function or an import that your answer needs goes inside the exercise cell that uses it. In a cell
  of its own it does not run, and the exercise fails with a `NameError`."""

REFERENCE = REPO / "helper_utils" / "reference"
_STUB_LINE = re.compile(r"^(\s*)### STUB:\s?(.*)$")
# Anything that looks like a marker: a comment line starting with START/END CODE HERE or STUB, in any case
# and spacing. A misspelled marker is not recognised as one, so the solution after it would reach the
# learner copy: such a line is refused rather than copied.
_LOOKS_LIKE_MARKER = re.compile(r"^#+\s*((start|end)\s*code\s*here|stub)\b", re.IGNORECASE)


class ReleaseError(ValueError):
    """A solution notebook whose exercise markers don't pair up, or a misspelled marker."""


def make_learner_source(source: str, where: str = "cell") -> str:
    """Replace each exercise region of one code cell's source with its scaffold."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if (_LOOKS_LIKE_MARKER.match(stripped) and stripped not in (START, END)
                and not _STUB_LINE.match(line)):
            raise ReleaseError(f"{where}, line {number}: {stripped!r} looks like an exercise marker but is not one; "
                               f"the markers are exactly {START!r}, {END!r} and {STUB!r} followed by the stub line")
        if stripped == START:
            if inside:
                raise ReleaseError(f"{where}, line {number}: START inside another exercise region")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [line, f"{indent}# YOUR CODE HERE"]
        elif stripped == END:
            if not inside:
                raise ReleaseError(f"{where}, line {number}: END without START")
            inside = False
            out.append(line)
        elif inside:
            stub = _STUB_LINE.match(line)
            if stub:
                out.append(stub.group(1) + stub.group(2))
        else:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: START without END")
    return "\n".join(out)


def _clean_notebook(nb: nbformat.NotebookNode, keep_checked_outputs: bool = True) -> nbformat.NotebookNode:
    """Minimal metadata, outputs only on ``nbval-check-output`` cells (execution count 1), all else cleared."""
    nb = nbformat.from_dict(nb)
    nb.metadata = {k: nb.metadata[k] for k in KEPT_METADATA if k in nb.metadata}
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        cell.metadata = {"tags": tags} if tags else {}
        cell.pop("id", None)
        if cell.cell_type == "code":
            keep = keep_checked_outputs and CHECK_TAG in tags and bool(cell.outputs)
            # nbval refuses stored outputs on a cell without an execution count: give kept ones a fixed 1
            cell.execution_count = 1 if keep else None
            if not keep:
                cell.outputs = []
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = cell.execution_count
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def hand_in_note(name: str) -> str:
    """The note that ends every learner notebook with exercises; ``name`` is its file name."""
    return HAND_IN.format(name=name)


def _learner_notebook(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner copy of a solution notebook: scaffolds instead of answers, no outputs, the hand-in note."""
    nb = _clean_notebook(solution, keep_checked_outputs=False)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = make_learner_source(cell.source, f"{name}, cell {index}")
    if any(EXERCISE_TAG in cell.metadata.get("tags", []) for cell in nb.cells):
        nb.cells.append(nbformat.v4.new_markdown_cell(hand_in_note(name), metadata={"tags": [HAND_IN_TAG]}))
        nb.cells[-1].pop("id", None)
    return nb


def _solution_source(source: str) -> str:
    """One exercise cell's source with its solution kept and the marker and ``### STUB:`` lines dropped."""
    make_learner_source(source)  # raises on unpaired markers
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in (START, END) and not _STUB_LINE.match(line))


def _module_name(path: Path) -> str:
    return path.stem.split("_", 1)[1]  # "02_inverted_residual_block" -> "inverted_residual_block"


def _exported_names(source: str) -> list[str]:
    """The public names an exercise cell defines: what its reference module exports."""
    return [name for name in defined_names(source) if not name.startswith("_")]


def _direct_imports(source: str, answers: dict[str, str], where: str) -> str:
    """``source`` with each ``from helper_utils import ...`` replaced by imports from the defining modules.

    A reference module is imported while ``helper_utils.reference`` is still loading; going back
    through the package's lazy loader (``helper_utils.__getattr__``) would import that half-loaded
    package. ``answers`` maps the answers of earlier notebooks to their reference modules.
    """
    import helper_utils

    lines = source.splitlines()
    for node in reversed(ast.parse(source).body):  # bottom up: earlier line numbers stay valid
        if not (isinstance(node, ast.ImportFrom) and node.module == "helper_utils" and not node.level):
            continue
        by_module: dict[str, list[str]] = {}
        for alias in node.names:
            module = answers.get(alias.name) or helper_utils._MODULE_OF.get(alias.name)
            if module is None:
                raise ReleaseError(f"{where}: `from helper_utils import {alias.name}`: {alias.name} is neither a "
                                   f"helper_utils name nor the answer of an earlier notebook")
            by_module.setdefault(module, []).append(alias.name + (f" as {alias.asname}" if alias.asname else ""))
        rest = lines[node.end_lineno - 1][node.end_col_offset:]  # a trailing comment
        new = [f"from {module} import {', '.join(names)}" for module, names in by_module.items()]
        new[-1] += rest
        lines[node.lineno - 1: node.end_lineno] = new
    return "\n".join(lines)


def _header(path: Path) -> str:
    where = path.relative_to(REPO).as_posix()
    return (f"# AUTOGENERATED from {where} by `make release` (python -m tools.release).\n"
            f"# DO NOT EDIT: edit the exercise cells of that notebook, then run `make release`.\n")


def _reference_module(solution: nbformat.NotebookNode, path: Path,
                     earlier: dict[str, str] | None = None) -> tuple[str, list[str]] | None:
    """The reference module of one solution notebook and the names it exports; ``None`` without exercises.

    ``earlier`` maps the answers of earlier notebooks to the reference modules that define them.
    """
    exports, answers = [], []
    for index, cell in enumerate(solution.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type != "code":
            continue
        if EXPORT_TAG in tags:
            exports.append(_direct_imports(cell.source.strip(), earlier or {}, f"{path.name}, cell {index}"))
        elif EXERCISE_TAG in tags:
            answers.append(_solution_source(cell.source).strip())
    if not answers:
        return None
    names = [name for source in answers for name in _exported_names(source)]
    text = (_header(path) + f'"""Reference answers of notebook {path.stem}: {", ".join(names)}."""\n\n'
            + "\n".join(exports) + "\n\n" + f"__all__ = {names!r}\n\n\n" + "\n\n\n".join(answers) + "\n")
    return text, names


_SECTION_HEADING = re.compile(r"^##\s+(.+?)\s*$")  # "## 6. Exercise: class weights (about 2 lines)"
_LINE_COUNT = re.compile(r"\s*\(about \d+ lines?\)$")


def exercise_sections(solution: nbformat.NotebookNode) -> dict[str, str]:
    """Each name an exercise cell defines -> the heading of its section, e.g. ``"6. Exercise: class weights"``.

    The section is the last level-2 heading (``## ...``) above the exercise cell, without its
    "(about N lines)".
    """
    sections: dict[str, str] = {}
    heading = ""
    for cell in solution.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                match = _SECTION_HEADING.match(line)
                if match:
                    heading = _LINE_COUNT.sub("", match.group(1))
        elif cell.cell_type == "code" and EXERCISE_TAG in cell.get("metadata", {}).get("tags", []):
            for name in _exported_names(_solution_source(cell.source)):
                sections[name] = heading
    return sections


def _reference_package(modules: dict[str, list[str]], sections: dict[str, str]) -> str:
    everything = [name for names in modules.values() for name in names]
    lines = ["# AUTOGENERATED from notebooks/solutions/ by `make release` (python -m tools.release).",
             "# DO NOT EDIT: edit the exercise cells of the notebooks, then run `make release`.",
             '"""Reference answers of every exercise, one module per solution notebook, in course order."""', "",
             f"__all__ = {everything!r}", "",
             "# The heading of the section that teaches each answer (a cell that needs an unfinished one names it)",
             "SECTIONS = {", *(f"    {name!r}: {heading!r}," for name, heading in sections.items()), "}", ""]
    lines += [f"from helper_utils.reference.{module} import {', '.join(names)}" for module, names in modules.items()]
    return "\n".join(lines) + "\n"


def _write_references(solutions: Path = SOLUTIONS, target: Path = REFERENCE, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, compare) ``helper_utils/reference/``; returns the stale files."""
    wanted: dict[Path, str] = {}
    modules: dict[str, list[str]] = {}
    answers: dict[str, str] = {}  # answer -> the reference module that defines it, for later notebooks' imports
    sections: dict[str, str] = {}
    for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb")):
        solution = nbformat.read(path, as_version=4)
        built = _reference_module(solution, path, answers)
        if built is not None:
            text, names = built
            modules[_module_name(path)] = names
            answers.update({name: f"helper_utils.reference.{_module_name(path)}" for name in names})
            sections.update(exercise_sections(solution))
            wanted[target / f"{_module_name(path)}.py"] = text
    wanted[target / "__init__.py"] = _reference_package(modules, sections)
    stale = [out for out, text in wanted.items() if not (out.exists() and out.read_text(encoding="utf-8") == text)]
    stale += [extra for extra in sorted(target.glob("*.py")) if extra not in wanted]  # a notebook renamed or gone
    if not check:
        target.mkdir(parents=True, exist_ok=True)
        for out in stale:
            if out in wanted:
                out.write_text(wanted[out], encoding="utf-8")
            else:
                out.unlink()
    return stale


def _dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def release(solutions: Path = SOLUTIONS, target: Path = NOTEBOOKS, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, compare) every learner notebook; returns the stale ones."""
    stale = []
    sources = sorted(solutions.glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise ReleaseError(f"no solution notebooks found in {solutions}")
    for path in sources:
        text = _dumps(_learner_notebook(nbformat.read(path, as_version=4), path.name))
        out = target / path.name
        if out.exists() and out.read_text(encoding="utf-8") == text:
            continue
        stale.append(out)
        if not check:
            out.write_text(text, encoding="utf-8")
    return stale


def clean_solutions(solutions: Path = SOLUTIONS, check: bool = False) -> list[Path]:
    """Strip the solution notebooks in place (or, with ``check``, list the unclean ones)."""
    unclean = []
    for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb")):
        text = _dumps(_clean_notebook(nbformat.read(path, as_version=4)))
        if path.read_text(encoding="utf-8") != text:
            unclean.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    return unclean


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tools.release", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if anything would change")
    parser.add_argument("--clean", action="store_true", help="strip the solution notebooks in place")
    parser.add_argument("--publish", action="store_true",
                        help="with --check: also fail while the launch links name the placeholder owner <org>")
    args = parser.parse_args(argv)
    if args.publish and (args.clean or not args.check):
        parser.error("--publish goes with --check alone")
    launch: list[str] = []
    try:
        if args.clean:
            changed = clean_solutions(check=args.check)
            verb = "not clean" if args.check else "cleaned"
        else:
            changed = release(check=args.check) + _write_references(check=args.check)
            verb = "stale (run `make release`)" if args.check else "written"
            launch = publish.problems(publish=args.publish) if args.check else []
    except (ReleaseError, ValueError, OSError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"{verb}: {path.relative_to(REPO)}")
    for problem in launch:
        print(f"launch: {problem}")
    if not changed:
        print("all notebooks up to date")
    return 1 if (args.check and (changed or launch)) else 0


if __name__ == "__main__":
    sys.exit(main())
