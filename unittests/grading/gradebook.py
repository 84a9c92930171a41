"""The gradebook ``python -m unittests.grade`` writes: ``grades.csv`` and one ``feedback/<learner>.md`` each.

``grades.csv`` has one row per learner, notebook and exercise::

    learner, notebook, exercise, passed, total, points, max_points, status, note

``passed``/``total`` count the grader's cases; ``points`` is ``max_points`` when every case
passed, else 0 (with partial credit, ``max_points * passed / total`` for a graded exercise);
``status`` is one of ``STATUSES``; ``note`` says why, in one line. A text cell that a spreadsheet
would read as a formula (``=``, ``+``, ``-``, ``@``...) is written with a leading ``'``, so that a
folder named ``=HYPERLINK(...)`` stays text.

Beside ``grades.csv``: ``totals.csv`` (one row per learner: points, maximum, a column per
notebook), ``run.json`` (the run record: kit version and commit, settings, shard, start and end,
whether it finished) and ``journal/`` (each finished learner's rows, written as the learner
finishes, so that a stopped run keeps them and ``--resume`` goes on from them).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FIELDS", "STATUSES", "ExerciseResult", "write_csv", "read_csv", "feedback_path", "write_feedback",
           "write_totals", "read_record", "write_record", "Journal", "merge", "RECORD", "TOTALS"]

RECORD, TOTALS, JOURNAL = "run.json", "totals.csv", "journal"
NOTE_CHARS = 300

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
    partial: bool = False  # points in proportion to the cases passed

    @property
    def passed(self) -> int:
        return sum(c["passed"] is True for c in self.cases)

    @property
    def points(self) -> float:
        if self.status == "ok":
            return self.max_points
        if self.partial and self.status == "failed" and self.cases:
            return round(self.max_points * self.passed / len(self.cases), 2)
        return 0

    @property
    def why(self) -> str:
        """The note, on one line: for failed cases, how many failed and the first one's name and hint."""
        note = self.note
        failed = [c for c in self.cases if c.get("passed") is not True and not c.get("skipped")]
        if self.status == "failed" and failed:
            first = failed[0]
            skipped = sum(bool(c.get("skipped")) for c in self.cases)
            summary = (f"{len(self.cases) - self.passed} of {len(self.cases)} checks failed"
                       + (f" ({skipped} not run)" if skipped else "")
                       + f"; first: {first.get('name', '?')}" + (f": {first['hint']}" if first.get("hint") else ""))
            note = f"{note}; {summary}" if note else summary
        return " ".join(str(note).split())[:NOTE_CHARS]

    def row(self) -> dict:
        return {"learner": self.learner, "notebook": self.notebook, "exercise": self.exercise,
                "passed": self.passed, "total": len(self.cases), "points": _number(self.points),
                "max_points": self.max_points, "status": self.status, "note": self.why}


def _number(value: float):
    """``1`` for 1.0, ``0.67`` for two thirds: what a gradebook column shows."""
    value = round(float(value), 2)
    return int(value) if value == int(value) else value


def _cell(value):
    """A CSV cell a spreadsheet shows as text: a leading ``'`` before what would start a formula (or a ``'``)."""
    if isinstance(value, str) and value.startswith((*_FORMULA_START, "'")):
        return "'" + value
    return value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith((*_FORMULA_START, "'")) else value


def _write_atomic(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then put it in place in one step.

    A reader (or a run stopped half-way) sees the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_csv(rows: list[dict], path: Path) -> None:
    """Write ``rows`` sorted by learner, notebook and exercise order as given (stable)."""
    ordered = sorted(rows, key=lambda r: (r["learner"], r["notebook"]))

    def write(f):
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in ordered)

    _write_atomic(path, write)


def write_totals(rows: list[dict], path: Path) -> list[dict]:
    """``totals.csv``: one row per learner with ``points``, ``max_points`` and each notebook's points."""
    notebooks = sorted({r["notebook"] for r in rows})
    totals: dict[str, dict] = {}
    for r in rows:
        mine = totals.setdefault(r["learner"], {"learner": r["learner"], "points": 0.0, "max_points": 0,
                                                **{n: 0.0 for n in notebooks}})
        mine["points"] += float(r["points"])
        mine["max_points"] += int(r["max_points"])
        mine[r["notebook"]] += float(r["points"])
    table = [{key: _number(value) if isinstance(value, float) else value for key, value in t.items()}
             for _, t in sorted(totals.items())]

    def write(f):
        writer = csv.DictWriter(f, fieldnames=["learner", "points", "max_points", *notebooks])
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in table)

    _write_atomic(path, write)
    return table


def read_record(folder: Path) -> dict | None:
    """The run record (``run.json``) in ``folder``, or None when there is none."""
    path = folder / RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a run record ({e})") from None


def write_record(folder: Path, record: dict) -> None:
    _write_atomic(folder / RECORD, lambda f: f.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n"))


class Journal:
    """Each finished learner's rows, one JSON file each in ``folder``, written as the learner finishes."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, learner: str) -> Path:
        return feedback_path(self.folder, learner).with_suffix(".json")

    def add(self, learner: str, rows: list[dict]) -> None:
        _write_atomic(self.path(learner),
                     lambda f: f.write(json.dumps({"learner": learner, "rows": rows}, ensure_ascii=False)))

    def rows(self) -> dict[str, list[dict]]:
        """Finished learners and their rows (a file a stopped run left half-written is not there: writes are atomic)."""
        found = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.json")):
                entry = json.loads(path.read_text(encoding="utf-8"))
                found[entry["learner"]] = entry["rows"]
        return found

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def read_csv(path: Path) -> list[dict]:
    """The rows of a gradebook; raises ValueError naming the columns when they are not ``FIELDS``."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {list(FIELDS)}")
        return [{key: _uncell(value) for key, value in row.items()} for row in reader]


def feedback_path(folder: Path, learner: str) -> Path:
    """``folder/<learner>.md``, with a name any file system takes (odd or long names: shortened, plus a hash)."""
    safe = re.sub(r"[^\w.\- ]", "_", learner).strip(" .") or "_"
    if safe != learner or len(safe.encode()) > 100:
        digest = hashlib.sha256(learner.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        safe = f"{safe.encode()[:80].decode(errors='ignore')}-{digest}"
    return folder / f"{safe}.md"


def _feedback_text(learner: str, results: list[ExerciseResult]) -> str:
    earned = _number(sum(r.points for r in results))
    possible = sum(r.max_points for r in results)
    lines = [f"# Feedback for {learner}", "", f"**{earned} / {possible} points**", ""]
    notebook = None
    for r in results:
        if r.notebook != notebook:
            notebook = r.notebook
            lines += [f"## {notebook}", ""]
        lines.append(f"### {r.exercise}: {_number(r.points)} / {r.max_points} ({r.status})")
        if r.note:
            lines.append(f"- {r.note}")
        skipped = [c for c in r.cases if c.get("skipped") and not c["passed"]]
        for c in r.cases:
            if c["passed"]:
                lines.append(f"- PASS {c['name']}")
            elif c.get("skipped"):
                if c is skipped[0]:  # one line for all of them: they share their reason
                    reason = c["hint"] if all(s["hint"] == c["hint"] for s in skipped) else "not run"
                    lines.append(f"- SKIP {len(skipped)} more check{'s' if len(skipped) > 1 else ''}: {reason}")
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
        path = feedback_path(folder, learner)
        text = _feedback_text(learner, mine)
        _write_atomic(path, lambda f: f.write(text))
        written.append(path)
    return written


def _check_shards(parts: list[Path]) -> tuple[int, list[dict]]:
    """The parts' run records, once they make a whole: every shard ``1..n`` of one ``n``, once, finished.

    Raises:
        ValueError: naming what is wrong: a part with no record, an unfinished part, parts of
            different ``n`` or notebooks, a shard given twice (the shards overlap), a shard missing.
    """
    records, seen = [], {}
    for part in parts:
        record = read_record(part.parent)
        if record is None or "shard" not in record:
            raise ValueError(f"{part}: no {RECORD} beside it saying which shard it is (grade it with --shard i/n)")
        i, n = (int(x) for x in str(record["shard"]).split("/"))
        if not record.get("complete"):
            raise ValueError(f"{part}: shard {i}/{n} did not finish; go on with --resume --shard {i}/{n}, "
                             "then merge again")
        if seen and n != records[0][1]:
            raise ValueError(f"{part} is shard {i}/{n}, {records[0][2]} is shard {records[0][0]}/{records[0][1]}: "
                             "parts of different runs")
        if i in seen:
            raise ValueError(f"shard {i}/{n} is given twice ({seen[i]} and {part}): the shards overlap")
        if records and record.get("notebooks") != records[0][3].get("notebooks"):
            raise ValueError(f"{part} graded notebooks {record.get('notebooks')}, {records[0][2]} graded "
                             f"{records[0][3].get('notebooks')}: parts of different runs")
        seen[i] = part
        records.append((i, n, part, record))
    n = records[0][1] if records else 0
    missing = [i for i in range(1, n + 1) if i not in seen]
    if missing:
        shown = ", ".join(f"{i}/{n}" for i in missing)
        raise ValueError(f"shard{'s' if len(missing) > 1 else ''} {shown} missing: grade "
                         f"{'them' if len(missing) > 1 else 'it'} (--shard {missing[0]}/{n}), then merge again")
    return n, [r for *_, r in records]


def merge(parts: list[Path], out: Path) -> list[dict]:
    """Merge partial gradebooks (``--shard`` runs) and their ``feedback/`` folders into ``out``.

    Writes ``grades.csv`` (``out``), ``totals.csv``, ``feedback/`` and a run record naming the parts.

    Raises:
        ValueError: when the parts are not every shard of one run, finished (:func:`_check_shards`),
            or two parts grade the same learner.
    """
    started = _now()
    n, records = _check_shards(parts)
    rows: list[dict] = []
    seen: dict[str, Path] = {}
    feedback = out.parent / "feedback"
    for part in parts:
        part_rows = read_csv(part)
        for learner in {r["learner"] for r in part_rows}:
            if learner in seen:
                raise ValueError(f"learner {learner!r} is in both {seen[learner]} and {part}: the shards overlap")
            seen[learner] = part
            source = feedback_path(part.parent / "feedback", learner)
            if source.exists() and source.resolve() != (feedback / source.name).resolve():
                feedback.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, feedback / source.name)
        rows += part_rows
    write_csv(rows, out)
    write_totals(rows, out.parent / TOTALS)
    first = records[0] if records else {}
    write_record(out.parent, {"kind": "merge", "kit": first.get("kit"), "notebooks": first.get("notebooks"),
                              "partial": first.get("partial"), "shards": n, "complete": True,
                              "parts": [str(p) for p in parts], "learners": len(seen),
                              "started": started, "ended": _now(),
                              "part_runs": [{k: r.get(k) for k in ("shard", "started", "ended", "learners")}
                                            for r in records]})
    return rows


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
