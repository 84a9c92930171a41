"""A pytest plugin that reports the course's numbers from the nbval run that checks the notebooks.

CI executes every notebook once, under nbval. This plugin reads what each executed cell printed
(nbval keeps it in ``item.test_outputs``), keeps the lines that carry a result (accuracy,
retrieval metrics, latency, what was loaded or trained) and prints them per notebook with the
notebook's wall time at the end of the run; ``--course-report PATH`` also writes them as JSON.
So the numbers in the CI log are the numbers of the execution nbval compared, not of a second run.

Usage (``make test`` and ``make bench-course`` do this)::

    python -m pytest -p tools.course_report --nbval-lax notebooks/solutions [--course-report artifacts/course.json]
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helper_utils.device import machine_description

# printed lines worth a summary: accuracies, retrieval metrics, timings, what was loaded or trained
_RESULT_LINE = re.compile(r"accuracy|test-time|P@1|Recall@|R-Precision|mAP@R|latency|\bms\b|Loaded|trained|epochs in|"
                         r"^\s*(before|tutorial|fix)\b|test photos", re.IGNORECASE)

_notebooks: dict[str, dict] = {}


def result_lines(outputs) -> list[str]:
    """The result lines among a cell's outputs (stdout streams only)."""
    lines = []
    for output in outputs or []:
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            text = output.get("text", "")
            lines += [line.strip() for line in (text if isinstance(text, str) else "".join(text)).splitlines()]
    return [line for line in lines if line and _RESULT_LINE.search(line)]


def pytest_addoption(parser):
    parser.addoption("--course-report", default=None, help="write the course's result lines and times as JSON here")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    if call.when != "call" or not hasattr(item, "test_outputs"):
        return  # not an nbval cell
    notebook = Path(str(item.fspath)).stem
    entry = _notebooks.setdefault(notebook, {"seconds": 0.0, "results": []})
    entry["seconds"] += call.stop - call.start
    entry["results"] += result_lines(item.test_outputs)


def pytest_terminal_summary(terminalreporter):
    if not _notebooks:
        return
    write = terminalreporter.write_line
    terminalreporter.section("course results (printed by the notebooks nbval just ran)")
    total = 0.0
    for notebook, entry in sorted(_notebooks.items()):
        total += entry["seconds"]
        write(f"== {notebook}: {entry['seconds']:.0f} s")
        for line in entry["results"]:
            write(f"   {line}")
    write(f"all notebooks: {total:.0f} s ({total / 60:.1f} min) on {machine_description()}")
    path = terminalreporter.config.getoption("--course-report")
    if path:
        report = {"machine": machine_description(), "total_seconds": round(total, 1),
                  "notebooks": {k: {"seconds": round(v["seconds"], 1), "results": v["results"]}
                                for k, v in sorted(_notebooks.items())}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
