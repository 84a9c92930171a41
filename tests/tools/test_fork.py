"""Forking the course: `make fork ORG=... [TAG=...]` points every launch point at the fork, and a release
meant for publication is refused while the placeholder owner is left."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from tools import fork, publish, release

ROOT = Path(__file__).resolve().parents[2]


KIT = publish.Release(publish.PLACEHOLDER, "fashion-visual-search-kit", "v0.2.0")  # the release the kit names


def _kit_copy(tmp_path: Path) -> Path:
    """The files a fork rewrites, copied and named as the kit ships them (also when this clone is a fork)."""
    root = tmp_path / "kit"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "docs" / "grading", root / "docs" / "grading")
    shutil.copy(ROOT / "README.md", root / "README.md")
    publish.point_at(KIT, root)
    release.release(root / "notebooks" / "solutions", root / "notebooks")
    return root


def _colab_sources(root: Path) -> set[str]:
    paths = sorted(root.glob("notebooks/[0-9][0-9]_*.ipynb")) + sorted(root.glob("notebooks/solutions/*.ipynb"))
    assert len(paths) == 20
    return {nbformat.read(path, as_version=4).cells[1].source for path in paths}


def test_the_course_names_one_release_everywhere():
    """The kit itself, or a fork after `make fork`: every launch point agrees; only a fork is publishable."""
    assert publish.problems() == []
    assert release.main(["--check"]) == 0
    placeholder = publish.current().owner == publish.PLACEHOLDER
    assert bool(publish.problems(publish=True)) == placeholder
    assert release.main(["--check", "--publish"]) == (1 if placeholder else 0)


def test_a_release_left_on_the_placeholder_is_not_publishable(tmp_path):
    root = _kit_copy(tmp_path)
    assert publish.problems(root) == []  # consistent, but ...
    (refused,) = publish.problems(root, publish=True)
    assert "<org>" in refused and "make fork ORG=" in refused


def test_fork_rewrites_every_colab_cell_and_readme_link(tmp_path):
    root = _kit_copy(tmp_path)
    before = (root / "README.md").read_text()
    wanted, changed = fork.fork("myuni", root=root)
    assert wanted == publish.Release("myuni", "fashion-visual-search-kit", "myuni-v0.2.0")
    assert publish.problems(root, publish=True) == []

    (source,) = _colab_sources(root)  # one cell, the same in all 20 notebooks
    assert 'REPO = "https://github.com/myuni/fashion-visual-search-kit"' in source
    assert 'TAG = "myuni-v0.2.0"' in source
    assert release.release(root / "notebooks" / "solutions", root / "notebooks", check=True) == []

    readme = (root / "README.md").read_text()
    assert "<org>" not in readme and readme.count("github/myuni/fashion-visual-search-kit/blob/myuni-v0.2.0/") == 10
    assert "mybinder.org/v2/gh/myuni/fashion-visual-search-kit/myuni-v0.2.0?urlpath=lab/tree/notebooks" in readme
    assert len(readme.splitlines()) == len(before.splitlines())  # links rewritten in place, nothing else
    for path in (root / "docs" / "grading").glob("*.yaml"):
        assert "registry.example.org" not in path.read_text()
        for line in path.read_text().splitlines():
            if line.strip().startswith("image: "):
                assert line.strip() == "image: fashion-kit-grader:myuni-v0.2.0", path.name
    assert root / "README.md" in changed and root / "notebooks" / "02_inverted_residual_block.ipynb" in changed

    # the image pushed to a registry keeps its name; a renamed fork with its own tag; running again changes nothing
    job = root / "docs" / "grading" / "grade-job.yaml"
    job.write_text(job.read_text().replace("image: fashion-kit-grader:", "image: ghcr.io/myuni/fashion-kit-grader:"))
    fork.fork("other-org/ml-course", "ml-2025", root=root)
    assert publish.current(root) == publish.Release("other-org", "ml-course", "ml-2025")
    assert "image: ghcr.io/myuni/fashion-kit-grader:ml-2025\n" in job.read_text()
    assert fork.fork("other-org/ml-course", "ml-2025", root=root)[1] == []
    assert publish.problems(root, publish=True) == []


def test_a_launch_link_that_drifts_is_reported(tmp_path):
    root = _kit_copy(tmp_path)
    fork.fork("myuni", root=root)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("blob/myuni-v0.2.0/notebooks/03", "blob/v0.2.0/notebooks/03", 1))
    found = publish.problems(root)
    assert len(found) == 1 and "README.md (Colab link)" in found[0] and "'v0.2.0'" in found[0]
    merge = root / "docs" / "grading" / "merge-job.yaml"
    merge.write_text(merge.read_text().replace("fashion-kit-grader:myuni-v0.2.0", "fashion-kit-grader:latest"))
    assert "docs/grading/merge-job.yaml (image) names tag 'latest'" in publish.problems(root)[1]


@pytest.mark.parametrize("org, tag, message", [
    ("my org", None, "owner 'my org'"),
    ("<org>", None, "owner '<org>'"),
    ("myuni", "release/1", "a '/' would end"),
    ("myuni/bad name", None, "repository name 'bad name'"),
])
def test_bad_names_are_refused_before_anything_is_written(tmp_path, org, tag, message):
    root = _kit_copy(tmp_path)
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    with pytest.raises(ValueError, match=message):
        fork.fork(org, tag, root=root)
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == before


def test_a_tag_the_fork_inherited_is_refused(tmp_path):
    root = _kit_copy(tmp_path)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git[:3] + ["init", "--quiet"], check=True)
    subprocess.run(git + ["commit", "--quiet", "--allow-empty", "-m", "kit"], check=True)
    subprocess.run(git + ["tag", "v0.2.0"], check=True)
    with pytest.raises(ValueError, match="'v0.2.0' already exists .* e.g. myuni-v0.2.0"):
        fork.fork("myuni", "v0.2.0", root=root)
    assert fork.fork("myuni", root=root)[0].tag == "myuni-v0.2.0"


def test_the_command_says_what_it_wrote_and_what_to_do_next(tmp_path, monkeypatch, capsys):
    root = _kit_copy(tmp_path)
    monkeypatch.setattr(fork, "REPO", root)
    assert fork.main(["--org", "myuni"]) == 0
    out = capsys.readouterr().out
    assert "written: README.md" in out and "written: notebooks/solutions/01_data_pipeline.ipynb" in out
    assert "git tag myuni-v0.2.0 && git push origin HEAD myuni-v0.2.0" in out
    assert fork.main(["--org", "my org"]) == 1
    assert capsys.readouterr().err.startswith("error: owner 'my org'")


def test_make_fork_passes_org_and_tag_and_asks_for_org():
    make = ["make", "-n", "-C", str(ROOT)]
    dry = subprocess.run(make + ["fork", "ORG=myuni", "TAG=fall-2025"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert '-m tools.fork --org "myuni" --tag "fall-2025"' in dry.stdout
    assert "--tag" not in subprocess.run(make + ["fork", "ORG=myuni"], capture_output=True, text=True).stdout
    missing = subprocess.run(["make", "-C", str(ROOT), "fork"], capture_output=True, text=True)
    assert missing.returncode != 0 and "usage: make fork ORG=" in missing.stdout + missing.stderr
