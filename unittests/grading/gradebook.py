"""The gradebook ``python -m unittests.grade`` writes: ``grades.csv`` and one ``feedback/<learner>.md`` each.

``grades.csv`` has one row per learner, notebook and exercise::

    learner, notebook, exercise, passed, total, points, max_points, status, note

``passed``/``total`` count the grader's cases; ``points`` is ``max_points`` when every case
passed, else 0; ``status`` is one of ``STATUSES``; ``note`` says why when there are no points
to give. A text cell that a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``...)
is written with a leading ``'``, so that a folder named ``=HYPERLINK(...)`` stays text.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FIELDS", "STATUSES", "ExerciseResult", "write_csv", "write_feedback",
           "merge"]

FIELDS = ("learner", "notebook", "exercise", "passed", "total", "points", "max_points", "status", "note")
STATUSES = {
    "ok": "every case passed",
    "failed": "the grader ran; some cases failed",
    "error": "the exercise could not be graded: an error before the grader, an unreadable notebook, a dead kernel",
    "timeout": "the exercise or its grader ran past the time limit",
    "missing": "the notebook is not in the submission, or the exercise is not defined in it",
    "rejected": "the answer is the kit's own, or the notebook changed the grader: 0 points, and the note says why",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")  # what a spreadsheet reads as a formula (OWASP)


@dataclass
class ExerciseResult:
    """How one learner did on one exercise; ``cases`` are the recorded grader cases (dicts)."""

    learner: str
    notebook: str
    exercise: str
    max_points: int
    status: str
    cases: list[dict] = field(default_factory=list)
    note: str = ""  # why there are no cases (error message, time limit, missing file)

    @property
    def passed(self) -> int:
        return sum(c["passed"] for c in self.cases)

    @property
    def points(self) -> int:
        return self.max_points if self.status == "ok" else 0

    def row(self) -> dict:
        return {"learner": self.learner, "notebook": self.notebook, "exercise": self.exercise,
                "passed": self.passed, "total": len(self.cases), "points": self.points,
                "max_points": self.max_points, "status": self.status, "note": self.note}


def _cell(value):
    """A CSV cell a spreadsheet shows as text: a leading ``'`` before what would start a formula (or a ``'``)."""
    if isinstance(value, str) and value.startswith((*_FORMULA_START, "'")):
        return "'" + value
    return value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith((*_FORMULA_START, "'")) else value


def write_csv(rows: list[dict], path: Path) -> None:
    """Write ``rows`` sorted by learner, notebook and exercise order as given (stable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda r: (r["learner"], r["notebook"]))
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in ordered)


def _read_csv(path: Path) -> list[dict]:
    """The rows of a gradebook; raises ValueError naming the columns when they are not ``FIELDS``."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {list(FIELDS)}")
        return [{key: _uncell(value) for key, value in row.items()} for row in reader]


def _feedback_path(folder: Path, learner: str) -> Path:
    """``folder/<learner>.md``, with a name any file system takes (odd or long names: shortened, plus a hash)."""
    safe = re.sub(r"[^\w.\- ]", "_", learner).strip(" .") or "_"
    if safe != learner or len(safe.encode()) > 100:
        digest = hashlib.sha256(learner.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        safe = f"{safe.encode()[:80].decode(errors='ignore')}-{digest}"
    return folder / f"{safe}.md"


def _feedback_text(learner: str, results: list[ExerciseResult]) -> str:
    earned = sum(r.points for r in results)
    possible = sum(r.max_points for r in results)
    lines = [f"# Feedback for {learner}", "", f"**{earned} / {possible} points**", ""]
    notebook = None
    for r in results:
        if r.notebook != notebook:
            notebook = r.notebook
            lines += [f"## {notebook}", ""]
        lines.append(f"### {r.exercise}: {r.points} / {r.max_points} ({r.status})")
        if r.note:
            lines.append(f"- {r.note}")
        for c in r.cases:
            if c["passed"]:
                lines.append(f"- PASS {c['name']}")
            elif c.get("skipped"):
                lines.append(f"- SKIP {c['name']}: {c['hint']}")
            else:
                lines.append(f"- FAIL {c['name']}")
                lines.append(f"  - expected: {c['expected']}")
                lines.append(f"  - got: {c['got']}")
                if c["hint"]:
                    lines.append(f"  - hint: {c['hint']}")
        lines.append("")
    return "\n".join(lines)


def write_feedback(results: list[ExerciseResult], folder: Path) -> list[Path]:
    """Write ``folder/<learner>.md`` for every learner in ``results``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    by_learner: dict[str, list[ExerciseResult]] = {}
    for r in results:
        by_learner.setdefault(r.learner, []).append(r)
    written = []
    for learner, mine in sorted(by_learner.items()):
        path = _feedback_path(folder, learner)
        path.write_text(_feedback_text(learner, mine), encoding="utf-8", errors="backslashreplace")
        written.append(path)
    return written


def merge(parts: list[Path], out: Path) -> list[dict]:
    """Merge partial gradebooks (``--shard`` runs) and their ``feedback/`` folders into ``out``.

    Raises:
        ValueError: when two parts grade the same learner (the shards overlap).
    """
    rows: list[dict] = []
    seen: dict[str, Path] = {}
    feedback = out.parent / "feedback"
    for part in parts:
        part_rows = _read_csv(part)
        for learner in {r["learner"] for r in part_rows}:
            if learner in seen:
                raise ValueError(f"learner {learner!r} is in both {seen[learner]} and {part}: the shards overlap")
            seen[learner] = part
            source = _feedback_path(part.parent / "feedback", learner)
            if source.exists() and source.resolve() != (feedback / source.name).resolve():
                feedback.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, feedback / source.name)
        rows += part_rows
    write_csv(rows, out)
    return rows
