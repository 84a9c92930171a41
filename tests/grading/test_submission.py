"""A submission on disk: what is copied, what is refused, and how an odd name is shown."""

import os

import pytest

from unittests.grading import submission

NB = "02_inverted_residual_block"


def _folder(tmp_path, name="ana"):
    folder = tmp_path / "subs" / name
    folder.mkdir(parents=True)
    (folder / f"{NB}.ipynb").write_text("{}")
    return folder


def test_plain_files_and_folders_are_copied_links_and_special_files_are_not(tmp_path):
    folder = _folder(tmp_path)
    (folder / "data").mkdir()
    (folder / "data" / os.fsdecode(b"caf\xe9.txt")).write_text("mine")
    (folder / ("n" * 240)).write_text("long name")
    (tmp_path / "secret.txt").write_text("not theirs")
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "linked-folder").symlink_to(tmp_path)
    os.mkfifo(folder / "pipe")
    copy = submission.stage(folder, NB, tmp_path / "scratch", max_mb=10)
    assert copy == tmp_path / "scratch" / f"{NB}.ipynb" and copy.read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == sorted([f"{NB}.ipynb", "data", "n" * 240])
    assert (tmp_path / "scratch" / "data" / os.fsdecode(b"caf\xe9.txt")).read_text() == "mine"


def test_links_and_big_folders_are_refused(tmp_path):
    real = _folder(tmp_path, "real")
    (tmp_path / "subs" / "alias").symlink_to(real)
    with pytest.raises(submission.Refused, match="folder is a symbolic link"):
        submission.stage(tmp_path / "subs" / "alias", NB, tmp_path / "s1", max_mb=10)
    linked = tmp_path / "subs" / "linked"
    linked.mkdir()
    (linked / f"{NB}.ipynb").symlink_to(real / f"{NB}.ipynb")
    with pytest.raises(submission.Refused, match="is a symbolic link"):
        submission.stage(linked, NB, tmp_path / "s2", max_mb=10)
    with open(real / "sparse.bin", "wb") as f:
        f.truncate(20 * 2**20)  # takes no disk, counts in full
    with pytest.raises(submission.Refused, match="holds 20 MB, more than the 10 MB"):
        submission.stage(real, NB, tmp_path / "s3", max_mb=10)
    assert not (tmp_path / "s3").exists()  # refused before anything is copied
    with pytest.raises(FileNotFoundError):
        submission.stage(real, "06_visual_search", tmp_path / "s4", max_mb=100)


def test_too_many_files_are_refused(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    for i in range(5):
        (folder / f"f{i}").write_text("")
    monkeypatch.setattr(submission, "MAX_ENTRIES", 3)
    with pytest.raises(submission.Refused, match="more than 3 files"):
        submission.stage(folder, NB, tmp_path / "s", max_mb=10)


@pytest.mark.parametrize("raw,shown", [
    ("ana", "ana"),
    (os.fsdecode(b"l\xe9a"), "l\\xe9a"),
    ("tab\there", "tab\\there"),
    ("new\nline", "new\\nline"),
    ("=1+1", "=1+1"),  # escaped for spreadsheets when written, not here
])
def test_display_names(raw, shown):
    assert submission.display_name(raw) == shown


def test_learners_lists_folders_and_links_but_not_files_or_hidden_ones(tmp_path):
    subs = tmp_path / "subs"
    for name in ("b", "a", ".git"):
        (subs / name).mkdir(parents=True)
    (subs / "notes.txt").write_text("")
    (subs / "c").symlink_to(tmp_path)
    assert submission.learners(subs) == ["a", "b", "c"]
