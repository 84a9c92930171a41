"""What a class run writes, and how a long run survives: totals, notes, the run record, partial credit,
folded feedback, the default output folder, per-learner writes, --resume, --learner and --merge's checks.

The kernels are replaced by a stand-in (``_fake_grade_notebook``): these tests are about the files.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import zipfile
from pathlib import Path

import pytest

from unittests.grading import grade as grader_cli
from unittests.grading.gradebook import ExerciseResult, feedback_path, write_feedback
from unittests.grading.points import notebook_exercises

B, S = "02_inverted_residual_block", "06_visual_search"
SETTINGS = grader_cli.Settings(fork=False)
CALLS: list[tuple[str, str]] = []


def _cases(learner: str) -> list[dict]:
    """``ann...``: every case passes; ``bo...``: 1 of 4; others: none (the stub: one failure, the rest skipped)."""
    if learner.startswith("ann"):
        return [{"name": f"c{i}", "passed": True, "skipped": False, "expected": None, "got": None, "hint": ""}
                for i in range(4)]
    if learner.startswith("bo"):
        return [{"name": "c0", "passed": True, "skipped": False, "expected": None, "got": None, "hint": ""},
                {"name": "c1", "passed": False, "skipped": False, "expected": "3", "got": "4",
                 "hint": "check the\nstride"}] + [
                {"name": f"c{i}", "passed": False, "skipped": False, "expected": "1", "got": "2", "hint": "h"}
                for i in (2, 3)]
    return [{"name": "shape", "passed": False, "skipped": False, "expected": "a block", "got": "None", "hint": "write it"}
            ] + [{"name": f"c{i}", "passed": False, "skipped": True, "expected": None, "got": None,
                  "hint": "not run: fix 'shape' first"} for i in range(1, 8)]


async def _fake_grade_notebook(run, learner, notebook):
    from unittests.grading.submission import display_name

    CALLS.append((learner, notebook))
    exercises = notebook_exercises(notebook)
    resolved = run.resolved.get(learner)
    if resolved is not None and notebook not in resolved.paths:
        status = "error" if notebook in resolved.refused else "missing"
        return [ExerciseResult(display_name(learner), notebook, e.name, e.points, status, note="none") for e in exercises]
    cases = _cases(learner)
    status = "ok" if all(c["passed"] for c in cases) else "failed"
    return [ExerciseResult(display_name(learner), notebook, e.name, e.points, status, list(cases)) for e in exercises]


@pytest.fixture(autouse=True)
def fake_kernels(monkeypatch):
    monkeypatch.setattr(grader_cli, "grade_notebook", _fake_grade_notebook)
    CALLS.clear()


def _nb(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")


def _class(root: Path) -> Path:
    subs = root / "subs"
    _nb(subs / "ann" / f"Copy of {B}.ipynb")
    _nb(subs / "bo" / "notebooks" / f"{B} (1).ipynb")
    (subs / "cy").mkdir(parents=True)
    with zipfile.ZipFile(subs / "cy.zip", "w") as z:
        z.writestr(f"{B}-Copy1.ipynb", "{}")
    return subs


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_class_gets_totals_notes_a_record_and_output_outside_the_kit(tmp_path, capsys):
    subs = _class(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("learner\nann\nbo\ncy\ndee\n")
    assert grader_cli.main([str(subs), "--roster", str(roster), "--jobs", "1", "--no-fork", "--partial"]) == 0
    out = tmp_path / "grading-output"  # beside the submissions folder
    assert grader_cli.default_out(subs) == out / "grades.csv"
    rows = _rows(out / "grades.csv")
    assert {r["notebook"] for r in rows} == {B}  # only what someone handed in, not all 13
    totals = _rows(out / "totals.csv")
    assert list(totals[0]) == ["learner", "points", "max_points", B]
    assert [(t["learner"], t["points"], t["max_points"]) for t in totals] == [
        ("ann", "1", "1"), ("bo", "0.25", "1"), ("cy", "0", "1"), ("dee", "0", "1")]
    by = {r["learner"]: r for r in rows}
    assert by["dee"]["status"] == "missing"  # on the roster, handed in nothing
    assert by["bo"]["note"] == "3 of 4 checks failed; first: c1: check the stride"  # one line
    assert by["cy"]["note"].startswith("8 of 8 checks failed (7 not run); first: shape")
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] and record["shard"] == "1/1" and record["notebooks"] == [B] and record["partial"]
    assert record["kit"]["version"] and record["settings"]["jobs"] == 1 and record["learners"] == 4
    assert record["started"] <= record["ended"] and record["roster"] == str(roster.resolve())
    feedback = (out / "feedback" / "cy.md").read_text()
    assert feedback.count("SKIP") == 1 and "- SKIP 7 more checks: not run: fix 'shape' first" in feedback
    assert "0.25 / 1 points" in (out / "feedback" / "bo.md").read_text()


def test_ignored_files_are_warned_about_and_notebooks_beyond_the_selection_said_once(tmp_path, capsys):
    subs = _class(tmp_path)
    _nb(subs / "ann" / f"{S}.ipynb")
    _nb(subs / "bo" / f"{S}.ipynb")
    _nb(subs / "stray.ipynb")
    (subs / "notes.pdf").write_text("")
    assert grader_cli.main([str(subs), "--notebooks", B, "--out", str(tmp_path / "o" / "grades.csv")]) == 0
    err = capsys.readouterr().err
    assert "warning: ignored stray.ipynb" in err and "warning: ignored notes.pdf" in err
    assert f"not graded (not in --notebooks): {S} (2 learners)" in err
    assert err.count(S) == 1


def test_results_are_written_per_learner_and_resume_goes_on(tmp_path, monkeypatch, capsys):
    subs = tmp_path / "subs"
    for name in ("ann1", "ann2", "ann3", "ann4"):
        _nb(subs / name / f"{B}.ipynb")
    out = tmp_path / "o" / "grades.csv"
    seen_on_disk = []

    async def stop_at_third(run, learner, notebook):
        if learner == "ann3":
            await asyncio.sleep(0.5)  # the learner before has finished its writes
            seen_on_disk.append(sorted(r["learner"] for r in _rows(out)))
            raise KeyboardInterrupt  # Ctrl-C while the third learner is graded
        return await _fake_grade_notebook(run, learner, notebook)

    monkeypatch.setattr(grader_cli, "grade_notebook", stop_at_third)
    settings = grader_cli.Settings(fork=False, jobs=1)
    with pytest.raises(KeyboardInterrupt):
        grader_cli.grade_submissions(subs, out, settings=settings)
    finished = sorted(learner for learner, _ in CALLS)  # graded before the Ctrl-C (learners finish in any order)
    assert finished and "ann3" not in finished
    assert seen_on_disk == [finished]  # each written as it finished
    assert sorted(r["learner"] for r in _rows(out)) == finished
    record = json.loads((out.parent / "run.json").read_text())
    assert not record["complete"] and record["stopped"] == "interrupted" and record["graded"] == len(finished)
    assert "go on with --resume" in capsys.readouterr().err

    monkeypatch.setattr(grader_cli, "grade_notebook", _fake_grade_notebook)
    CALLS.clear()
    assert grader_cli.main([str(subs), "--out", str(out), "--resume", "--no-fork"]) == 0
    assert sorted(learner for learner, _ in CALLS) == sorted({"ann1", "ann2", "ann3", "ann4"} - set(finished))
    assert [r["learner"] for r in _rows(out)] == ["ann1", "ann2", "ann3", "ann4"]
    record = json.loads((out.parent / "run.json").read_text())
    assert record["complete"] and len(record["resumed"]) == 1 and record["graded"] == 4


def test_one_learner_is_regraded_into_the_gradebook(tmp_path, capsys):
    subs = _class(tmp_path)
    out = tmp_path / "o" / "grades.csv"
    assert grader_cli.main([str(subs), "--out", str(out), "--no-fork"]) == 0
    before = _rows(out)
    (out.parent / "feedback" / "ann.md").unlink()
    # ann's folder changes to bo's kind of work: only her rows change
    (subs / "ann" / f"Copy of {B}.ipynb").unlink()
    _nb(subs / "ann" / f"{B}.ipynb")
    CALLS.clear()
    assert grader_cli.main([str(subs), "--out", str(out), "--learner", "ann", "--no-fork"]) == 0
    assert CALLS == [("ann", B)]
    after = _rows(out)
    assert [r for r in after if r["learner"] != "ann"] == [r for r in before if r["learner"] != "ann"]
    assert (out.parent / "feedback" / "ann.md").exists()
    record = json.loads((out.parent / "run.json").read_text())
    assert record["regraded"][0]["learner"] == "ann" and record["complete"]
    assert grader_cli.main([str(subs), "--out", str(out), "--learner", "zed"]) == 1
    assert "zed" in capsys.readouterr().err
    assert grader_cli.main([str(subs), "--out", str(tmp_path / "none" / "g.csv"), "--learner", "ann"]) == 1
    assert "no gradebook" in capsys.readouterr().err


def _shards(tmp_path: Path, n: int) -> list[Path]:
    subs = tmp_path / "subs"
    for name in ("ann", "bo", "cy", "dee", "ed"):
        _nb(subs / name / f"{B}.ipynb")
    parts = []
    for i in range(1, n + 1):
        part = tmp_path / f"part-{i}" / "grades.csv"
        grader_cli.grade_submissions(subs, part, shard=(i, n), settings=SETTINGS)
        parts.append(part)
    return parts


def test_merge_refuses_an_incomplete_set_of_shards(tmp_path, capsys):
    parts = _shards(tmp_path, 3)
    merged = tmp_path / "m" / "grades.csv"
    assert grader_cli.main(["--merge", str(parts[0]), str(parts[1]), "--out", str(merged)]) == 1
    err = capsys.readouterr().err
    assert "shard 3/3 missing" in err and len(err.splitlines()) == 1 and not merged.exists()
    assert grader_cli.main(["--merge", str(parts[0]), str(parts[0]), str(parts[1]), "--out", str(merged)]) == 1
    assert "given twice" in capsys.readouterr().err
    record = json.loads((parts[2].parent / "run.json").read_text())
    (parts[2].parent / "run.json").write_text(json.dumps({**record, "complete": False}))
    assert grader_cli.main(["--merge", *map(str, parts), "--out", str(merged)]) == 1
    assert "shard 3/3 did not finish" in capsys.readouterr().err
    (parts[2].parent / "run.json").write_text(json.dumps(record))
    assert grader_cli.main(["--merge", *map(str, parts), "--out", str(merged)]) == 0
    one = tmp_path / "one" / "grades.csv"
    grader_cli.grade_submissions(tmp_path / "subs", one, settings=SETTINGS)
    assert merged.read_text() == one.read_text()
    assert (merged.parent / "totals.csv").read_text() == (one.parent / "totals.csv").read_text()
    record = json.loads((merged.parent / "run.json").read_text())
    assert record["kind"] == "merge" and record["shards"] == 3 and record["learners"] == 5
    (parts[1].parent / "run.json").unlink()
    assert grader_cli.main(["--merge", *map(str, parts), "--out", str(merged)]) == 1
    assert "no run.json" in capsys.readouterr().err


def _exit_code(argv: list[str]) -> int:
    try:
        return grader_cli.main(argv)
    except SystemExit as e:  # argparse's answer (one line, code 1: helper_utils.cli)
        return e.code


def test_flags_that_do_not_go_together_are_one_line(tmp_path, capsys):
    subs = _class(tmp_path)
    for argv in ([str(subs), "--learner", "ann", "--resume"], [str(subs), "--learner", "ann", "--shard", "1/2"],
                 ["--merge", "x.csv"], [str(subs), "--roster", str(tmp_path / "nope.csv")]):
        assert _exit_code(argv) == 1, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert grader_cli.main([str(empty)]) == 1
    assert "no learner" in capsys.readouterr().err


def test_feedback_folds_skips_and_a_note_is_one_line(tmp_path):
    cases = _cases("cy")
    result = ExerciseResult("cy", B, "InvertedResidualBlock", 1, "failed", cases, note="the exercise cell\nraised X")
    assert "\n" not in result.row()["note"] and result.row()["note"].startswith("the exercise cell raised X; 8 of 8")
    write_feedback([result], tmp_path)
    text = feedback_path(tmp_path, "cy").read_text()
    assert text.count("- SKIP") == 1 and "c7" not in text and "SKIP 7 more checks" in text


def test_the_kit_ignores_its_default_output_folder():
    root = Path(__file__).resolve().parents[2]
    ignored = (root / ".gitignore").read_text().split()
    assert "/grading-output/" in ignored and "/grades.csv" in ignored and "/feedback/" in ignored
    assert os.path.basename(grader_cli.default_out(root / "submissions").parent) == "grading-output"


@pytest.mark.slow
def test_every_hand_in_shape_graded_for_real(tmp_path, monkeypatch, capsys):
    """Real kernels: a Colab copy, a Jupyter duplicate, a nested folder, a zip, and a learner on the roster only."""
    import nbformat

    monkeypatch.undo()  # the real grade_notebook
    root = Path(__file__).resolve().parents[2]
    solution = (root / "notebooks" / "solutions" / f"{B}.ipynb").read_text()
    stub = (root / "notebooks" / f"{B}.ipynb").read_text()
    subs = tmp_path / "submissions"
    for path, text in ((subs / "ada" / f"Copy of {B}.ipynb", solution), (subs / "bob" / f"{B} (1).ipynb", stub),
                       (subs / "cy" / "notebooks" / f"{B}-Copy1.ipynb", solution)):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    with zipfile.ZipFile(subs / "dee.zip", "w") as z:
        z.writestr(f"hand-in/{B}.ipynb", solution)
    nbformat.reads(solution, as_version=4)  # the solution is a notebook
    roster = tmp_path / "roster.csv"
    roster.write_text("learner,email\nada,a@x\nbob,b@x\ncy,c@x\ndee,d@x\neve,e@x\n")
    assert grader_cli.main([str(subs), "--roster", str(roster), "--partial", "--timeout", "150"]) == 0
    out = tmp_path / "grading-output"
    totals = {t["learner"]: (t["points"], t["max_points"], t[B]) for t in _rows(out / "totals.csv")}
    assert totals == {"ada": ("1", "1", "1"), "bob": ("0", "1", "0"), "cy": ("1", "1", "1"),
                      "dee": ("1", "1", "1"), "eve": ("0", "1", "0")}
    statuses = {r["learner"]: (r["status"], r["note"]) for r in _rows(out / "grades.csv")}
    assert statuses["eve"] == ("missing", "handed in nothing") and statuses["bob"][0] == "failed"
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] and record["notebook_seconds"][B]["graded"] == 4
