"""tools.scale_bench: the benchmark's JSON, markdown page and plot, re-rendering a saved run, and bad input."""

import json

import pytest

from helper_utils.going_further import scale
from tools import scale_bench


def test_cli_writes_json_markdown_plot_and_rerenders(tmp_path, capsys):
    out = {name: tmp_path / "results" / name for name in ("r.json", "r.md", "r.png")}
    assert scale_bench.main(["--n", "1500", "--queries", "60", "--single", "5", "--no-real", "--json", str(out["r.json"]),
                       "--markdown", str(out["r.md"]), "--plot", str(out["r.png"])]) == 0
    report = json.loads(out["r.json"].read_text())
    assert report["setup"]["n"] == 1500 and report["setup"]["command"].startswith("python -m tools.scale_bench --n 1500")
    assert report["real"] is None
    assert len(report["synthetic"]) == sum(len(c.searches) for c in scale.default_configs(1500))
    markdown = out["r.md"].read_text()
    assert "| exact | " in markdown and "## Verdict" in markdown and "](r.png)" in markdown
    assert "Target (HNSW >= 100x faster per single query at recall@10 >= 0.95): **" in markdown
    assert out["r.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again"
    scale_bench.main(["--from-json", str(out["r.json"]), "--markdown", str(again / "r.md"), "--plot", str(again / "r.png")])
    rerendered = (again / "r.md").read_text()
    assert "re-rendered from the run's JSON, without measuring again: `python -m tools.scale_bench --from-json" in rerendered
    assert [line for line in rerendered.splitlines() if "re-rendered" not in line and line] == \
        [line for line in markdown.splitlines() if line]  # same numbers, same text


@pytest.mark.parametrize("start,end,shared", [([5.1, 5.7, 5.7], [2.7, 4.3, 5.1], True), ([0.4, 0.3, 0.2], [1.9, 1.0, 0.5], False)])
def test_load_sentence_says_whether_the_machine_was_shared(start, end, shared):
    sentence = scale_bench._load_sentence({"load_average_at_start": start, "load_average_at_end": end, "cpu_count": 2})
    assert ("The machine was shared" in sentence) == shared and f"{start[0]:.1f}/" in sentence
