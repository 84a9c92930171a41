"""The submissions grader (``python -m unittests.grade``) on generated submissions of notebooks 02 and 06.

One class is graded once (a module fixture): the solutions (full marks), the untouched learner
notebooks (zero), one mutant per notebook (the right exercise loses its point), and each way a
submission can break the run (unreadable notebook, renamed exercise, endless loop, dead kernel,
memory exhaustion, a 100 MB print, deleting files).
"""

from __future__ import annotations

import ast
import re
import csv
import hashlib
import importlib
import inspect
import sys
import time
from pathlib import Path

import nbformat
import pytest

from unittests.grading import grade as grader_cli
from unittests.grading.cells import defined_names
from unittests.grading.gradebook import ExerciseResult, FIELDS, STATUSES
from unittests.grading.points import EXERCISES, notebook_exercises

ROOT = Path(__file__).resolve().parents[2]
B, S = "02_inverted_residual_block", "06_visual_search"
NOTEBOOKS = [B, S]
SETTINGS = grader_cli.Settings(notebook_timeout_s=90, cell_timeout_s=10)  # the endless loop costs one cell limit

sys.path.insert(0, str(ROOT / "tests" / "graders"))  # the mutants modules
mutants_block = importlib.import_module("mutants_inverted_residual_block")
mutants_search = importlib.import_module("mutants_visual_search")


def _notebook(kind: str, name: str):
    folder = ROOT / "notebooks" / ("solutions" if kind == "solution" else "")
    return nbformat.read(folder / f"{name}.ipynb", as_version=4)


def _replace_exercise(nb, defines: str, source: str):
    """Put ``source`` in the exercise cell that defines ``defines``."""
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []) and f" {defines}(" in cell.source:
            cell.source = source
            return nb
    raise AssertionError(f"no exercise cell defines {defines}")


def _prepend_to_exercise(nb, defines: str, code: str):
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []) and f" {defines}(" in cell.source:
            cell.source = code + "\n" + cell.source
            return nb
    raise AssertionError(f"no exercise cell defines {defines}")


def mutant_cell(module, answer, exercise: str) -> str:
    """An exercise cell holding a mutant: its module's imports, its source, then the exercise's name bound to it."""
    text = inspect.getsource(module)
    imports = [ast.get_source_segment(text, node) for node in ast.parse(text).body
               if isinstance(node, ast.Import) or isinstance(node, ast.ImportFrom) and node.module != "__future__"]
    return "\n".join(imports) + "\n\n" + inspect.getsource(answer) + f"\n{exercise} = {answer.__name__}\n"


def _write(folder: Path, name: str, nb) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")


BLOCK_MUTANT = ("no-final-relu", *mutants_block.MUTANTS["no-final-relu"])
SEARCH_MUTANT = ("descending order", *mutants_search.CLOSEST_MUTANTS["descending order"])


def make_class(root: Path) -> Path:
    """One folder per learner; each learner name says what the submission does."""
    subs = root / "submissions"
    for name in NOTEBOOKS:
        _write(subs / "solutions", name, _notebook("solution", name))
        _write(subs / "untouched", name, _notebook("learner", name))
    _write(subs / "mutants", B, _replace_exercise(_notebook("solution", B), "InvertedResidualBlock",
                                                  mutant_cell(mutants_block, BLOCK_MUTANT[1], "InvertedResidualBlock")))
    _write(subs / "mutants", S, _replace_exercise(_notebook("solution", S), "find_closest",
                                                  mutant_cell(mutants_search, SEARCH_MUTANT[1], "find_closest")))
    (subs / "broken-json").mkdir(parents=True)
    (subs / "broken-json" / f"{B}.ipynb").write_text('{"cells": [', encoding="utf-8")
    _write(subs / "broken-json", S, _notebook("solution", S))
    renamed = _notebook("solution", S)
    for cell in renamed.cells:
        if "exercise" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace("def find_closest(", "def find_nearest(")
    _write(subs / "renamed", S, renamed)
    _write(subs / "endless-loop", S, _prepend_to_exercise(_notebook("solution", S), "get_embeddings",
                                                          "while True:\n    pass\n"))
    _write(subs / "dead-kernel", B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock",
                                                         "import os\nos._exit(1)\n"))
    _write(subs / "dead-kernel", S, _notebook("solution", S))
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(256 * 2**20))  # never touched: costs address space\n"
    _write(subs / "memory-hog", S, _prepend_to_exercise(_notebook("solution", S), "find_closest", hog))
    _write(subs / "flood", B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock",
                                                   "print('x' * 100_000_000)\n"))
    deleter = ("import os, shutil\nfor f in os.listdir('.'):\n    os.remove(f) if os.path.isfile(f) else None\n"
               "shutil.rmtree(os.path.expanduser('~'), ignore_errors=True)\n")
    _write(subs / "deleter", B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock", deleter))
    return subs


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade")
    subs = make_class(root)
    before, kit_before = _digest(subs), _digest(ROOT / "notebooks")
    start = time.perf_counter()
    results = grader_cli.grade_submissions(subs, root / "out" / "grades.csv", NOTEBOOKS, settings=SETTINGS)
    seconds = time.perf_counter() - start
    with open(root / "out" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"root": root, "subs": subs, "results": results, "rows": rows, "seconds": seconds,
            "untouched": before == _digest(subs) and kit_before == _digest(ROOT / "notebooks")}


def _status(graded, learner: str) -> dict:
    return {(r["notebook"], r["exercise"]): r["status"] for r in graded["rows"] if r["learner"] == learner}


def _points(graded, learner: str) -> dict:
    return {r["exercise"]: int(r["points"]) for r in graded["rows"] if r["learner"] == learner}


ALL = [e.name for e in EXERCISES if e.notebook in NOTEBOOKS]


def test_gradebook_has_a_row_per_learner_notebook_and_exercise(graded):
    learners = sorted({r["learner"] for r in graded["rows"]})
    assert learners == sorted(p.name for p in graded["subs"].iterdir())
    assert len(graded["rows"]) == len(learners) * len(ALL)
    assert tuple(graded["rows"][0]) == FIELDS
    assert {r["status"] for r in graded["rows"]} <= set(STATUSES)
    for r in graded["rows"]:
        assert int(r["points"]) == (int(r["max_points"]) if r["status"] == "ok" else 0)
        assert int(r["passed"]) <= int(r["total"])


def test_solutions_get_full_marks(graded):
    assert set(_status(graded, "solutions").values()) == {"ok"}
    assert sum(_points(graded, "solutions").values()) == len(ALL)


def test_untouched_learner_notebooks_get_zero(graded):
    assert set(_status(graded, "untouched").values()) == {"failed"}
    assert sum(_points(graded, "untouched").values()) == 0


def test_a_mutant_loses_exactly_its_exercise(graded):
    points = _points(graded, "mutants")
    assert points == {name: int(name not in ("InvertedResidualBlock", "find_closest")) for name in ALL}
    feedback = (graded["root"] / "out" / "feedback" / "mutants.md").read_text()
    for _, _, failing in (BLOCK_MUTANT, SEARCH_MUTANT):
        assert failing in feedback  # the failing case the grader tests name, or words of its hint


def test_feedback_has_expected_got_and_hint(graded):
    text = (graded["root"] / "out" / "feedback" / "untouched.md").read_text()
    assert "# Feedback for untouched" in text and "0 / 4 points" in text
    assert "- expected:" in text and "- got:" in text and "- hint:" in text


def test_broken_submissions_never_stop_the_run(graded):
    status = _status(graded, "broken-json")
    assert status[(B, "InvertedResidualBlock")] == "error"
    assert {status[(S, e)] for e in ("get_query_img_embedding", "get_embeddings", "find_closest")} == {"ok"}

    renamed = _status(graded, "renamed")
    assert renamed[(S, "find_closest")] == "missing" and renamed[(S, "get_embeddings")] == "ok"
    assert renamed[(B, "InvertedResidualBlock")] == "missing"  # no notebook 02 in that folder

    loop = _status(graded, "endless-loop")
    assert loop[(S, "get_embeddings")] == "timeout"
    assert loop[(S, "get_query_img_embedding")] == "ok" and loop[(S, "find_closest")] == "ok"

    dead = _status(graded, "dead-kernel")
    assert dead[(B, "InvertedResidualBlock")] == "error" and dead[(S, "find_closest")] == "ok"
    assert "kernel died" in (graded["root"] / "out" / "feedback" / "dead-kernel.md").read_text()

    hog = _status(graded, "memory-hog")
    assert hog[(S, "find_closest")] == "error" and hog[(S, "get_embeddings")] == "ok"
    assert "MemoryError" in (graded["root"] / "out" / "feedback" / "memory-hog.md").read_text()

    assert _status(graded, "flood")[(B, "InvertedResidualBlock")] == "ok"
    assert _status(graded, "deleter")[(B, "InvertedResidualBlock")] == "ok"


def test_submissions_and_the_kit_are_left_untouched(graded):
    assert graded["untouched"]


def test_a_small_class_is_graded_quickly(graded):
    # 12 learner folders, 2 notebooks, one endless loop held for one cell limit (10 s).
    assert graded["seconds"] < 120, f"{graded['seconds']:.0f} s"


# ---------------------------------------------------------------------------------------
# Sharding, points table, CLI: no kernels needed
# ---------------------------------------------------------------------------------------

def _fake_grade_notebook(learner, folder, notebook, workdir, settings, zygote):
    async def run():
        cases = [{"name": "case", "passed": len(learner) % 2 == 0, "skipped": False, "expected": "1",
                  "got": "2", "hint": "h"}]
        return [ExerciseResult(learner, notebook, e.name, e.points, "ok" if cases[0]["passed"] else "failed",
                               cases) for e in notebook_exercises(notebook)]
    return run()


def test_n_shards_merged_equal_one_run(tmp_path, monkeypatch):
    monkeypatch.setattr(grader_cli, "grade_notebook", _fake_grade_notebook)
    subs = tmp_path / "subs"
    for name in ["ana", "bo", "cy", "dee", "ed", "flo", "gus"]:
        (subs / name).mkdir(parents=True)
    settings = grader_cli.Settings(fork=False)
    grader_cli.grade_submissions(subs, tmp_path / "one" / "grades.csv", NOTEBOOKS, settings=settings)
    parts = []
    for i in (1, 2, 3):
        part = tmp_path / f"part{i}" / "grades.csv"
        grader_cli.grade_submissions(subs, part, NOTEBOOKS, shard=(i, 3), settings=settings)
        parts.append(part)
    assert grader_cli.main(["--merge", *map(str, parts), "--out", str(tmp_path / "merged" / "grades.csv")]) == 0
    assert (tmp_path / "merged" / "grades.csv").read_text() == (tmp_path / "one" / "grades.csv").read_text()
    assert _digest(tmp_path / "merged" / "feedback") == _digest(tmp_path / "one" / "feedback")
    assert grader_cli.shard_of(list("abcdefg"), (2, 3)) == ["b", "e"]


def test_overlapping_shards_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grader_cli, "grade_notebook", _fake_grade_notebook)
    (tmp_path / "subs" / "ana").mkdir(parents=True)
    out = tmp_path / "a" / "grades.csv"
    grader_cli.grade_submissions(tmp_path / "subs", out, [B], settings=grader_cli.Settings(fork=False))
    assert grader_cli.main(["--merge", str(out), str(out), "--out", str(tmp_path / "m.csv")]) == 2
    assert "overlap" in capsys.readouterr().err


def test_bad_arguments_name_what_was_got(tmp_path, capsys):
    assert grader_cli.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.csv")]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "subs").mkdir()
    assert grader_cli.main([str(tmp_path / "subs"), "--notebooks", "99_nope"]) == 2
    assert "99_nope" in capsys.readouterr().err
    with pytest.raises(ValueError, match="shard 4/3"):
        grader_cli.shard_of(["a"], (4, 3))


def test_points_table_matches_the_kit_notebooks():
    """The grader cells the grader runs are the kit's, and every exercise defines the names its grader is given."""
    import unittests

    cells = set()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in _notebook("learner", path.stem).cells:
            if "grader" in cell.metadata.get("tags", []):
                cells.add((path.stem, cell.source.strip()))
    assert cells == {(e.notebook, e.call) for e in EXERCISES}
    for e in EXERCISES:
        assert callable(getattr(unittests, e.grader)) and e.points > 0
        sources = [c.source for c in _notebook("learner", e.notebook).cells if "exercise" in c.metadata.get("tags", [])]
        assert any(set(e.defines) & set(defined_names(src)) for src in sources), e


def test_plain_kernels_grade_alike(tmp_path):
    """--no-fork: every kernel started from scratch (no zygote) gives the same gradebook."""
    subs = tmp_path / "submissions"
    _write(subs / "solutions", B, _notebook("solution", B))
    _write(subs / "untouched", B, _notebook("learner", B))
    settings = grader_cli.Settings(fork=False, notebook_timeout_s=120)
    results = grader_cli.grade_submissions(subs, tmp_path / "grades.csv", [B], settings=settings)
    assert [(r.learner, r.status, r.points) for r in results] == [("solutions", "ok", 1), ("untouched", "failed", 0)]
