"""The submissions grader (``python -m unittests.grade``) on generated submissions of notebooks 02 and 06.

One class is graded once (a module fixture): the solutions (full marks), the untouched learner
notebooks (zero), one mutant per notebook (the right exercise loses its point), each way a
submission can break the run (unreadable notebook, renamed exercise, endless loop, dead kernel,
memory exhaustion, a 100 MB print, deleting files), and hostile learners (``hostile.py``): each
attack of issue 20 on a faked grade, on the other learners, and on what is not theirs.
"""

from __future__ import annotations

import ast
import re
import csv
import hashlib
import importlib
import inspect
import os
import resource
import socket
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
sys.path.insert(0, str(ROOT / "tests" / "grading"))  # the hostile learners
mutants_block = importlib.import_module("mutants_inverted_residual_block")
mutants_search = importlib.import_module("mutants_visual_search")
hostile = importlib.import_module("hostile")
SANDBOX = not __import__("unittests.grading.sandbox", fromlist=["probe"]).probe()
needs_sandbox = pytest.mark.skipif(not SANDBOX, reason="no Linux sandbox here (python -m unittests.grading.sandbox)")
SECRET = "TOP-SECRET-a41f9c"  # in a file beside the submissions, and in the grader's environment


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


def _exercise_is(nb, defines: str, source: str):
    """Replace the whole exercise cell that defines ``defines``."""
    return _replace_exercise(nb, defines, source)


def _prepend_to_exercise(nb, defines: str, code: str):
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []) and f" {defines}(" in cell.source:
            cell.source = code + "\n" + cell.source
            return nb
    raise AssertionError(f"no exercise cell defines {defines}")


def mutant_cell(module, answer, exercise: str) -> str:
    """An exercise cell holding a mutant: its module's imports, its source, then the exercise's name bound to it.

    A mutant built on the reference answer gets a copy of the reference's source instead of the
    import (as a learner who copies the answer and changes it would): importing the kit's own
    answer is rejected, which is not what a mutant is for.
    """
    import helper_utils.reference as reference

    text = inspect.getsource(module)
    lines = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.ImportFrom) and node.module == "helper_utils.reference":
            for alias in node.names:
                answer_object = getattr(reference, alias.name)
                if not inspect.isclass(answer_object):  # an instance (val_transform): another notebook's answer
                    lines.append(f"from helper_utils.reference import {alias.name}")
                    continue
                source = inspect.getsource(answer_object)
                lines.append(source.replace(f"class {alias.name}(", f"class {alias.asname or alias.name}(", 1))
        elif isinstance(node, ast.Import) or isinstance(node, ast.ImportFrom) and node.module != "__future__":
            lines.append(ast.get_source_segment(text, node))
    return "\n".join(lines) + "\n\n" + inspect.getsource(answer) + f"\n{exercise} = {answer.__name__}\n"


def _write(folder: Path, name: str, nb) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")


BLOCK_MUTANT = ("no-final-relu", *mutants_block.MUTANTS["no-final-relu"])
SEARCH_MUTANT = ("descending order", *mutants_search.CLOSEST_MUTANTS["descending order"])


def make_class(root: Path, port: int) -> Path:
    """One folder per learner; each learner name says what the submission does."""
    subs = root / "submissions"
    _make_hostile(subs, root, port)
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


def _make_hostile(subs: Path, root: Path, port: int) -> None:
    solution_b, solution_s = _notebook("solution", B), _notebook("solution", S)
    _write(subs / "hostile-import", B, _exercise_is(_notebook("solution", B), "InvertedResidualBlock",
                                                    hostile.IMPORT_BLOCK))
    search = _notebook("solution", S)
    for name, source in hostile.IMPORT_SEARCH.items():
        _exercise_is(search, name, source)
    _write(subs / "hostile-import", S, search)
    _write(subs / "hostile-patcher", B, _exercise_is(_notebook("solution", B), "InvertedResidualBlock",
                                                     hostile.PATCH_GRADE))
    search = _notebook("solution", S)
    for name, source in hostile.PATCH_SEARCH.items():
        _exercise_is(search, name, source)
    _write(subs / "hostile-patcher", S, search)
    _write(subs / "hostile-forger", B, _exercise_is(_notebook("solution", B), "InvertedResidualBlock", hostile.FORGE))
    if SANDBOX:  # without it a learner's code can reach the others (docs/INSTRUCTORS.md says so): not tested
        _write(subs / "aa-neighbour", B, _prepend_to_exercise(solution_b, "InvertedResidualBlock", hostile.NEIGHBOUR))
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    (subs / "hostile-reader").mkdir(parents=True)
    (subs / "hostile-reader" / f"{B}.ipynb").symlink_to(secret)
    _write(subs / "hostile-reader", S, _exercise_is(solution_s, "get_query_img_embedding",
                                                    hostile.probe(str(secret), port, str(ROOT))))
    (subs / "hostile-sparse").mkdir(parents=True)
    _write(subs / "hostile-sparse", B, _notebook("solution", B))
    with open(subs / "hostile-sparse" / "big.bin", "wb") as f:
        f.truncate(2 * 2**30)  # 2 GB that take no disk
    odd = subs / '=HYPERLINK("evil.example","click")'  # and it floods its output past the kernel's cap
    _write(odd, B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock", hostile.flood()))
    (odd / os.fsdecode(b"caf\xe9 \xff.txt")).write_text("odd file name")
    (odd / ("n" * 240 + ".txt")).write_text("long file name")
    for name in (os.fsdecode(b"l\xe9arner-\xff"), "L" * 250):  # not UTF-8; as long as a name can be
        (subs / name).mkdir()
        (subs / name / f"{B}.ipynb").write_text('{"cells": [', encoding="utf-8")


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _hostile_processes() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if hostile.MARKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade")
    listener = socket.create_server(("127.0.0.1", 0))  # a service on this machine's loopback
    subs = make_class(root, listener.getsockname()[1])
    before, kit_before = _digest(subs), _digest(ROOT / "notebooks")
    memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:  # credentials in the grader's environment must not reach a kernel
        patch.setenv("AWS_SECRET_ACCESS_KEY", f"SEKRIT-{SECRET}")
        patch.setenv("GITHUB_TOKEN", f"SEKRIT-{SECRET}")
        results = grader_cli.grade_submissions(subs, root / "out" / "grades.csv", NOTEBOOKS, settings=SETTINGS)
    seconds = time.perf_counter() - start
    listener.close()
    with open(root / "out" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"root": root, "subs": subs, "results": results, "rows": rows, "seconds": seconds,
            "untouched": before == _digest(subs) and kit_before == _digest(ROOT / "notebooks"),
            "memory_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - memory_before) / 1024,
            "left_behind": _hostile_processes(), "csv": (root / "out" / "grades.csv").read_bytes()}


def _status(graded, learner: str) -> dict:
    return {(r["notebook"], r["exercise"]): r["status"] for r in graded["rows"] if r["learner"] == learner}


def _points(graded, learner: str) -> dict:
    return {r["exercise"]: int(r["points"]) for r in graded["rows"] if r["learner"] == learner}


ALL = [e.name for e in EXERCISES if e.notebook in NOTEBOOKS]


def _cell_text(name: str) -> str:
    """A learner's name as grades.csv holds it (display_name, then the formula escape)."""
    from unittests.grading.submission import display_name

    shown = display_name(name)
    return "'" + shown if shown.startswith(("=", "+", "-", "@", "'")) else shown


def test_gradebook_has_a_row_per_learner_notebook_and_exercise(graded):
    learners = sorted({r["learner"] for r in graded["rows"]})
    assert learners == sorted(_cell_text(p.name) for p in graded["subs"].iterdir())
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
    # 12 honest learners and 11 hostile ones, 2 notebooks, one endless loop held for one cell limit (10 s).
    assert graded["seconds"] < 240, f"{graded['seconds']:.0f} s"


# ---------------------------------------------------------------------------------------
# Hostile learners (issue 20): each attack and what it gets now
# ---------------------------------------------------------------------------------------

def _notes(graded, learner: str) -> dict:
    return {(r["notebook"], r["exercise"]): r["note"] for r in graded["rows"] if r["learner"] == learner}


def test_importing_the_kits_answer_is_rejected_in_any_spelling(graded):
    # a subclass of it, or its methods in a class of one's own: tests/grading/test_recorder.py
    status = _status(graded, "hostile-import")
    assert status[(B, "InvertedResidualBlock")] == "rejected"
    assert "kit's own answer" in _notes(graded, "hostile-import")[(B, "InvertedResidualBlock")]
    assert {status[(S, e)] for e in hostile.IMPORT_SEARCH} == {"rejected"}
    assert sum(_points(graded, "hostile-import").values()) == 0


def test_changing_the_graders_or_their_framework_is_rejected(graded):
    status, notes = _status(graded, "hostile-patcher"), _notes(graded, "hostile-patcher")
    assert set(status.values()) == {"rejected"}
    assert "changed" in notes[(B, "InvertedResidualBlock")]
    assert sum(_points(graded, "hostile-patcher").values()) == 0


def test_forged_records_are_rejected(graded):
    assert _status(graded, "hostile-forger")[(B, "InvertedResidualBlock")] == "rejected"
    assert _points(graded, "hostile-forger")["InvertedResidualBlock"] == 0


@needs_sandbox
def test_a_learner_cannot_change_the_others_grades_or_outlive_its_notebook(graded):
    assert graded["left_behind"] == []  # the detached process it started is gone
    assert sum(_points(graded, "solutions").values()) == len(ALL)  # graded after it, all still right
    assert b"spoiled" not in graded["csv"]
    assert not any("spoiled" in p.read_text() for p in (graded["root"] / "out" / "feedback").iterdir())
    assert _status(graded, "aa-neighbour")[(B, "InvertedResidualBlock")] == "ok"  # its kernel outlived the attack


@needs_sandbox
def test_nothing_from_outside_a_submission_reaches_its_feedback(graded):
    status, notes = _status(graded, "hostile-reader"), _notes(graded, "hostile-reader")
    assert status[(B, "InvertedResidualBlock")] == "error" and "symbolic link" in notes[(B, "InvertedResidualBlock")]
    probe = notes[(S, "get_query_img_embedding")]
    assert "probe secret=0 env=0 net=0 kitwrite=0 procs=1" in probe, probe  # no secret, no credentials, no network
    assert len(probe) <= grader_cli.NOTE_CHARS + 40  # the learner's own message, capped
    feedback = "".join(p.read_text(errors="replace") for p in (graded["root"] / "out" / "feedback").iterdir())
    assert SECRET not in feedback and "SEKRIT" not in feedback
    assert not (ROOT / "unittests" / "hostile_was_here.py").exists()


def test_a_flood_past_the_kernels_cap_costs_the_grader_nothing(graded):
    assert _status(graded, '\'=HYPERLINK("evil.example","click")')[(B, "InvertedResidualBlock")] == "ok"
    assert graded["memory_growth_mb"] < 300, f"the grader grew by {graded['memory_growth_mb']:.0f} MB"


def test_a_sparse_file_is_refused_before_it_is_copied(graded):
    assert _status(graded, "hostile-sparse")[(B, "InvertedResidualBlock")] == "error"
    assert "2048 MB" in _notes(graded, "hostile-sparse")[(B, "InvertedResidualBlock")]


def test_any_folder_name_is_handled_and_written_as_text(graded):
    hyperlink = '=HYPERLINK("evil.example","click")'
    assert _status(graded, "'" + hyperlink)[(B, "InvertedResidualBlock")] == "ok"  # its odd file names copied too
    assert b'\n"\'=HYPERLINK(' in graded["csv"] and b'\n"=HYPERLINK(' not in graded["csv"]
    learners = {r["learner"] for r in graded["rows"]}
    assert "l\\xe9arner-\\xff" in learners and "L" * 250 in learners
    feedback = {p.name for p in (graded["root"] / "out" / "feedback").iterdir()}
    assert len(feedback) == len(learners) and all(len(name.encode()) < 200 for name in feedback)


# ---------------------------------------------------------------------------------------
# Sharding, points table, CLI: no kernels needed
# ---------------------------------------------------------------------------------------

async def _fake_grade_notebook(run, learner, notebook):
    from unittests.grading.submission import display_name

    cases = [{"name": "case", "passed": len(learner) % 2 == 0, "skipped": False, "expected": "1", "got": "2",
              "hint": "h"}]
    return [ExerciseResult(display_name(learner), notebook, e.name, e.points,
                           "ok" if cases[0]["passed"] else "failed", cases) for e in notebook_exercises(notebook)]


def test_n_shards_merged_equal_one_run(tmp_path, monkeypatch):
    monkeypatch.setattr(grader_cli, "grade_notebook", _fake_grade_notebook)
    subs = tmp_path / "subs"
    for name in ["ana", "bo", "cy", "dee", "ed", "flo", "gus", "=1+1", os.fsdecode(b"\xff-odd"), "L" * 250]:
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
    assert "'=1+1" in (tmp_path / "one" / "grades.csv").read_text()  # a formula is written as text
    assert len(list((tmp_path / "merged" / "feedback").iterdir())) == 10
    assert _digest(tmp_path / "merged" / "feedback") == _digest(tmp_path / "one" / "feedback")
    assert grader_cli.shard_of(list("abcdefg"), (2, 3)) == ["b", "e"]


def test_overlapping_shards_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grader_cli, "grade_notebook", _fake_grade_notebook)
    (tmp_path / "subs" / "ana").mkdir(parents=True)
    out = tmp_path / "a" / "grades.csv"
    grader_cli.grade_submissions(tmp_path / "subs", out, [B], settings=grader_cli.Settings(fork=False))
    assert grader_cli.main(["--merge", str(out), str(out), "--out", str(tmp_path / "m.csv")]) == 1
    assert "overlap" in capsys.readouterr().err


def test_bad_arguments_name_what_was_got(tmp_path, capsys):
    assert grader_cli.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.csv")]) == 1
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "subs").mkdir()
    assert grader_cli.main([str(tmp_path / "subs"), "--notebooks", "99_nope"]) == 1
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


def test_the_memory_cap_covers_child_processes_and_their_number(tmp_path):
    """A child process that touches 1.5 GB under --memory-mb 256 is stopped, and so is a fork bomb."""
    subs = tmp_path / "submissions"
    _write(subs / "hog", B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock",
                                                 hostile.child_memory(1536)))
    _write(subs / "bomb", B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock",
                                                  hostile.fork_bomb(400)))
    settings = grader_cli.Settings(notebook_timeout_s=120, cell_timeout_s=60, memory_mb=256)
    results = grader_cli.grade_submissions(subs, tmp_path / "out" / "grades.csv", [B], settings=settings)
    notes = {r.learner: (r.status, r.note) for r in results}
    assert notes["hog"][0] == "error" and "more than the 256 MB allowed" in notes["hog"][1], notes
    assert notes["bomb"][0] == "error" and "more than 256 processes" in notes["bomb"][1], notes


def test_a_killed_kernel_starter_is_restarted_and_its_notebooks_regraded(tmp_path):
    """Without the sandbox a learner can reach the zygote: killing it costs the others nothing."""
    subs = tmp_path / "submissions"
    _write(subs / "a-killer", B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock",
                                                      hostile.KILL_STARTER))
    _write(subs / "b-solution", B, _notebook("solution", B))
    settings = grader_cli.Settings(notebook_timeout_s=120, jobs=1, sandbox=False)
    results = grader_cli.grade_submissions(subs, tmp_path / "out" / "grades.csv", [B], settings=settings)
    assert {r.learner: r.status for r in results if r.learner != "a-killer"} == {"b-solution": "ok"}


def test_isolation_is_said_for_every_system(monkeypatch):
    from unittests.grading import kernels

    for platform, words in (("win32", "none on Windows"), ("darwin", "macOS")):
        monkeypatch.setattr(sys, "platform", platform)
        sandboxed, line = kernels.isolation(True, True)
        assert not sandboxed and words in line and "docs/INSTRUCTORS.md" in line
    monkeypatch.setattr(sys, "platform", "linux")
    sandboxed, line = kernels.isolation(False, True)
    assert not sandboxed and "off (--no-sandbox)" in line


def test_the_grader_imports_without_posix_only_modules():
    """On Windows there is no ``resource``: importing the grader (and its kernel side) must not need it."""
    import subprocess

    code = ("import sys; sys.modules['resource'] = None\n"
            "import unittests.grading.grade, unittests.grading.recorder, unittests.grading.warden\n"
            "import unittests.grading.forkkernel, unittests.grading.sandbox\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.timeout(180)  # before the fix this test hung in a send, forever
def test_a_kernel_that_breaks_its_own_connection_cannot_hang_the_grader(tmp_path, monkeypatch):
    """Writing into the kernel's sockets broke its connection; a send then waited forever, past every limit."""
    monkeypatch.setattr(grader_cli, "SEND_TIMEOUT_S", 2.0)
    subs = tmp_path / "submissions"
    _write(subs / "jammer", B, _prepend_to_exercise(_notebook("solution", B), "InvertedResidualBlock", hostile.JAM_SOCKETS))
    _write(subs / "solutions", B, _notebook("solution", B))
    settings = grader_cli.Settings(notebook_timeout_s=60, cell_timeout_s=5)
    start = time.perf_counter()
    results = grader_cli.grade_submissions(subs, tmp_path / "grades.csv", [B], settings=settings)
    assert time.perf_counter() - start < 60  # each notebook within its limit, the two side by side
    notes = {r.learner: (r.status, r.points, r.note) for r in results}
    assert notes["solutions"] == ("ok", 1, "")
    status, points, note = notes["jammer"]
    assert status in ("timeout", "error") and points == 0 and "connection to the grader broke" in note, notes
