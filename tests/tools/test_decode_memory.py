"""tools.decode_memory: each case is at its limit, decoded (or refused) in a fresh worker, and reported."""

import json

from helper_utils.images import MAX_JPEG_COEFFICIENT_BYTES, jpeg_layout
from tools import decode_memory


def test_the_cases_sit_at_the_limits_they_name():
    progressive = decode_memory.CASES["progressive JPEG 4:4:4 at the coefficient limit"](1.0)
    layout = jpeg_layout(progressive)
    assert layout.progressive and 0.9 * MAX_JPEG_COEFFICIENT_BYTES < layout.coefficient_bytes <= MAX_JPEG_COEFFICIENT_BYTES
    assert jpeg_layout(decode_memory.CASES["scan bomb (2000 scans, refused unread)"](1.0)).scans > 2000


def test_measure_reports_each_decode_and_the_worst(tmp_path, capsys):
    names = ["photo, 533x400 JPEG", "scan bomb (2000 scans, refused unread)", "RGBA PNG at the full-decode limit"]
    report = decode_memory.measure(names, scale=0.1, log=lambda line: None)
    rows = {row["case"]: row for row in report["rows"]}
    assert rows[names[0]]["outcome"] == rows[names[2]]["outcome"] == "decoded"
    assert rows[names[1]]["outcome"].startswith("refused: ") and rows[names[1]]["added_mib"] == 0
    assert report["rest_mib"] > 10 and report["most_added_mib"] == max(r["added_mib"] for r in report["rows"])
    assert json.loads(json.dumps(report)) == report
