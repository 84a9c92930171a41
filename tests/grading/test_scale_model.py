"""tools.grade_bench's cost model and results page (from a saved run), and one real run of a tiny class."""

from __future__ import annotations

import json

import pytest

from tools import grade_bench

NOTEBOOKS = grade_bench.CORE


def _saved(learners: int = 10, wall: float = 100.0, per_notebook: float = 5.0) -> dict:
    seconds = {nb: {"graded": learners, "mean_s": per_notebook, "max_s": per_notebook * 2, "ok": learners // 2,
                    "ok_mean_s": per_notebook * 1.5, "not_ok_mean_s": per_notebook * 0.5} for nb in NOTEBOOKS}
    record = {"learners": learners, "settings": {"jobs": 2}, "notebook_seconds": seconds}
    return {"command": "python -m tools.grade_bench --learners 10", "when": "2026-12-07 00:00 UTC",
            "machine": {"cpu": "a CPU", "cpus": 2, "memory_gib": 24, "python": "3.11", "torch": "2", "system": "Linux"},
            "load_before": "1.0", "load_after": "1.2", "note": "",
            "runs": [{"commit": "abc", "seconds": wall, "statuses": {"ok": 80, "failed": 80}, "record": record}]}


def test_the_model_is_linear_in_the_measured_costs():
    model = grade_bench.cost_model(_saved()["runs"][0], class_learners=300, cluster_learners=3000, pods=20,
                                   pod_cpus=2, pod_overhead_s=120)
    per_learner = 6 * 5.0  # slot-seconds
    assert model["per_learner_slot_s"] == per_learner
    assert model["fixed_s"] == 0  # 10 learners x 30 slot-s / 2 slots = 150 s, more than the 100 s measured
    assert model["class"]["wall_s"] == round(300 * per_learner / 2)
    chosen = model["cluster"]["chosen"]
    assert chosen["pods"] == 20 and chosen["learners_per_pod"] == 150
    assert chosen["wall_s"] == round(120 + 150 * per_learner / 2)
    assert chosen["cpu_hours"] == round(20 * 2 * chosen["wall_s"] / 3600, 1)
    assert [s["pods"] for s in model["cluster"]["sizes"]] == [10, 20, 50]
    slow = grade_bench.cost_model(_saved(wall=400.0)["runs"][0])
    assert slow["fixed_s"] == 400 - 150 and slow["class"]["wall_s"] == 250 + 300 * 30 / 2


def test_the_page_names_its_run_machine_and_model(tmp_path, capsys):
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(_saved(wall=400.0)))
    page = tmp_path / "grading.md"
    assert grade_bench.main(["--from-json", str(saved), "--markdown", str(page), "--pods", "40"]) == 0
    text = page.read_text()
    assert "python -m tools.grade_bench --learners 10" in text and "a CPU, 2 CPUs" in text
    assert "| 300 learners | this machine, --jobs 2 |" in text and "40 pods x 2 CPUs" in text
    for notebook in NOTEBOOKS:
        assert f"| {notebook} | 10 | 5.0 | 7.5 | 2.5 | 10.0 |" in text
    assert "3,000 learners" in text and "assumption" in text
    assert "CPU-hours" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert grade_bench.main(["--from-json", str(tmp_path / "bad.json")]) == 1
    assert "not a saved run" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_run_of_two_learners_writes_the_page(tmp_path):
    page, saved = tmp_path / "grading.md", tmp_path / "grading.json"
    assert grade_bench.main(["--learners", "2", "--json", str(saved), "--markdown", str(page)]) == 0
    run = json.loads(saved.read_text())["runs"][0]
    assert run["record"]["learners"] == 2 and set(run["record"]["notebook_seconds"]) == set(NOTEBOOKS)
    assert run["statuses"].get("ok", 0) > 0 and run["statuses"].get("failed", 0) > 0
    assert "2 learners x 6 notebooks" in page.read_text()
