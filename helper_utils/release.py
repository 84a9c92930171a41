"""Write the learner notebooks from the solution notebooks, and check that they match.

The solution notebooks in ``notebooks/solutions/`` are the one source of truth. In each
code cell, an exercise region looks like this::

    ### START CODE HERE ###
    ### STUB: self.expand = None  # 1x1 conv -> BatchNorm -> ReLU
    self.expand = nn.Sequential(...)
    ### END CODE HERE ###

The learner copy keeps the markers, a ``# YOUR CODE HERE`` line and the ``### STUB:`` lines
(prefix removed, indentation kept); the solution lines are dropped. Every output is cleared.

Usage::

    python -m helper_utils.release           # write notebooks/NN_*.ipynb
    python -m helper_utils.release --check   # exit 1 if a learner notebook is stale or hand-edited
    python -m helper_utils.release --clean   # strip solution notebooks (outputs kept on nbval-check cells)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["START", "END", "STUB", "ReleaseError", "make_learner_source", "learner_notebook",
           "clean_notebook", "release", "main"]

START = "### START CODE HERE ###"
END = "### END CODE HERE ###"
STUB = "### STUB:"
CHECK_TAG = "nbval-check-output"  # the only cells whose outputs are committed (nbval compares them)
KEPT_METADATA = ("kernelspec", "language_info")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
_STUB_LINE = re.compile(r"^(\s*)### STUB:\s?(.*)$")


class ReleaseError(ValueError):
    """A solution notebook whose exercise markers don't pair up."""


def make_learner_source(source: str, where: str = "cell") -> str:
    """Replace each exercise region of one code cell's source with its scaffold."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
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


def clean_notebook(nb: nbformat.NotebookNode, keep_checked_outputs: bool = True) -> nbformat.NotebookNode:
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


def learner_notebook(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner copy of a solution notebook: scaffolds instead of answers, no outputs."""
    nb = clean_notebook(solution, keep_checked_outputs=False)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = make_learner_source(cell.source, f"{name}, cell {index}")
    return nb


def _dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def release(solutions: Path = SOLUTIONS, target: Path = NOTEBOOKS, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, compare) every learner notebook; returns the stale ones."""
    stale = []
    sources = sorted(solutions.glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise ReleaseError(f"no solution notebooks found in {solutions}")
    for path in sources:
        text = _dumps(learner_notebook(nbformat.read(path, as_version=4), path.name))
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
        text = _dumps(clean_notebook(nbformat.read(path, as_version=4)))
        if path.read_text(encoding="utf-8") != text:
            unclean.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    return unclean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helper_utils.release", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if anything would change")
    parser.add_argument("--clean", action="store_true", help="strip the solution notebooks in place")
    args = parser.parse_args(argv)
    try:
        if args.clean:
            changed = clean_solutions(check=args.check)
            verb = "not clean" if args.check else "cleaned"
        else:
            changed = release(check=args.check)
            verb = "stale (run `make release`)" if args.check else "written"
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"{verb}: {path.relative_to(NOTEBOOKS.parent)}")
    if not changed:
        print("all notebooks up to date")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
