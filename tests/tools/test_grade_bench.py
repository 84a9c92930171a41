"""tools.grade_bench: the class it generates, and its refusal of a folder that is not the kit."""

from tools import grade_bench


def test_the_class_alternates_solutions_and_untouched_notebooks(tmp_path):
    subs = grade_bench.make_class(tmp_path / "subs", 4)
    learners = sorted(p.name for p in subs.iterdir())
    assert learners == ["learner-000", "learner-001", "learner-002", "learner-003"]
    assert len(grade_bench.CORE) == 6
    for index, learner in enumerate(learners):
        names = sorted(p.stem for p in (subs / learner).iterdir())
        assert names == grade_bench.CORE
        source = grade_bench.SOLUTIONS if index % 2 == 0 else grade_bench.NOTEBOOKS
        assert (subs / learner / f"{names[1]}.ipynb").read_bytes() == (source / f"{names[1]}.ipynb").read_bytes()


def test_another_checkout_must_be_the_kit(tmp_path, capsys):
    assert grade_bench.main(["--learners", "2", "--compare", str(tmp_path)]) == 1
    assert "not a checkout of the kit" in capsys.readouterr().err
