"""Hand-ins as learners make them: copies' names, a nested folder, zips, a roster, and what is ignored."""

from __future__ import annotations

import os
import stat
import time
import zipfile
from pathlib import Path

import pytest

from unittests.grading import collect
from unittests.grading.points import EXERCISES

KNOWN = list(dict.fromkeys(e.notebook for e in EXERCISES))
B, S = "02_inverted_residual_block", "06_visual_search"


@pytest.mark.parametrize("name,expected", [
    (f"{B}.ipynb", (B, True)),
    (f"Copy of {B}.ipynb", (B, False)),
    (f"Copy of Copy of {B}.ipynb", (B, False)),
    (f"{B} (1).ipynb", (B, False)),
    (f"{B}-Copy1.ipynb", (B, False)),
    (f"{B} - Copy.ipynb", (B, False)),
    (f"Copy of {B} (2).ipynb", (B, False)),
    (f"{B}.py", (None, False)),
    ("my_notes.ipynb", (None, False)),
    (f"{B}-checkpoint.ipynb", (None, False)),
])
def test_notebook_names_of_copies(name, expected):
    assert collect.notebook_name(name, KNOWN) == expected


def _nb(path: Path, text: str = "{}", age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    return path


def _zip(path: Path, members: dict[str, str], links: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in members.items():
            z.writestr(name, text)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


def _class(root: Path) -> Path:
    subs = root / "subs"
    _nb(subs / "colab" / f"Copy of {B}.ipynb")
    _nb(subs / "dup" / f"{B} (1).ipynb")
    _nb(subs / "nested" / "notebooks" / f"{B}.ipynb")
    _nb(subs / "deep" / "a" / "b" / f"{B}.ipynb")
    _zip(subs / "zipped.zip", {f"work/{B}.ipynb": "{}", "work/data.txt": "x"})
    _zip(subs / "inner" / "hand-in.zip", {f"{S}.ipynb": "{}"})
    _nb(subs / "twice" / f"{B}.ipynb", '{"old": 1}', age=3600)
    _nb(subs / "twice" / f"Copy of {B}.ipynb", '{"new": 1}')
    _nb(subs / "notes" / "my_notes.ipynb")
    _nb(subs / "notes" / ".ipynb_checkpoints" / f"{B}-checkpoint.ipynb")
    _nb(subs / f"lms-ann_{B}.ipynb")
    _nb(subs / f"{B}.ipynb")  # no learner named
    _nb(subs / "readme.txt", "hello")
    _zip(subs / "evil.zip", {"../escape.ipynb": "{}"})
    _zip(subs / "linky.zip", {f"{B}.ipynb": "{}"}, links=("data",))
    return subs


def _resolve_all(subs: Path, tmp: Path, roster=None, notebooks=(B, S)):
    collection = collect.survey(subs, KNOWN, roster)
    resolved = {name: collect.resolve(h, list(notebooks), KNOWN, tmp / "unzip" / str(i), 512, subs)
                for i, (name, h) in enumerate(sorted(collection.handins.items()))}
    warnings = collection.warnings + [w for r in resolved.values() for w in r.warnings]
    return collection, resolved, warnings


def test_every_hand_in_shape_is_found(tmp_path):
    subs = _class(tmp_path)
    collection, resolved, warnings = _resolve_all(subs, tmp_path, roster=["colab", "ghost"])
    found = {name: {n: p.name for n, p in r.paths.items()} for name, r in resolved.items()}
    assert found["colab"] == {B: f"Copy of {B}.ipynb"}
    assert found["dup"] == {B: f"{B} (1).ipynb"}
    assert found["nested"] == {B: f"{B}.ipynb"}
    assert found["zipped"] == {B: f"{B}.ipynb"}
    assert (resolved["zipped"].paths[B].parent / "data.txt").read_text() == "x"  # the zip's other files come along
    assert found["inner"] == {S: f"{S}.ipynb"}
    assert found["lms-ann"] == {B: f"lms-ann_{B}.ipynb"}
    assert found["deep"] == {} and found["notes"] == {} and found["ghost"] == {}
    assert any(w.startswith("deep: handed in no notebook") for w in warnings)
    assert collection.handins["ghost"].on_roster and not collection.handins["ghost"].folders
    # two candidates: the newest, and a warning naming both
    assert found["twice"] == {B: f"Copy of {B}.ipynb"}
    assert any("twice: 2 files for" in w and f"ignored twice/{B}.ipynb" in w for w in warnings), warnings
    # refused zips: graded as errors with the reason
    assert "outside itself" in resolved["evil"].refused[B] and "symbolic link" in resolved["linky"].refused[B]
    assert not (tmp_path / "escape.ipynb").exists() and not list((tmp_path / "unzip").rglob("escape.ipynb"))
    # every ignored thing has its line
    text = "\n".join(warnings)
    for words in ("deep/a/", "notes/my_notes.ipynb", ".ipynb_checkpoints", f"ignored {B}.ipynb", "readme.txt",
                  "refused evil.zip", "refused linky.zip"):
        assert words in text, words
    assert "dup is not on the roster" in text and "ghost is not on the roster" not in text
    assert collect.handed_in_notebooks(collection.handins["inner"], KNOWN) == {S}
    assert collect.handed_in_notebooks(collection.handins["zipped"], KNOWN) == {B}


def test_the_exact_name_wins_a_tie(tmp_path):
    subs = tmp_path / "subs"
    a = _nb(subs / "ann" / f"{B}.ipynb")
    b = _nb(subs / "ann" / f"Copy of {B}.ipynb")
    stamp = time.time() - 60
    for p in (a, b):
        os.utime(p, (stamp, stamp))
    _, resolved, _ = _resolve_all(subs, tmp_path)
    assert resolved["ann"].paths[B] == a


def test_a_folder_that_is_a_link_is_refused_not_followed(tmp_path):
    subs = tmp_path / "subs"
    real = _nb(tmp_path / "elsewhere" / f"{B}.ipynb").parent
    subs.mkdir()
    (subs / "alias").symlink_to(real)
    (subs / "ann").mkdir()
    (subs / "ann" / "linked").symlink_to(real)
    _, resolved, warnings = _resolve_all(subs, tmp_path)
    assert "symbolic link" in resolved["alias"].refused[B]
    assert resolved["ann"].paths == {} and any("ann/linked" in w for w in warnings)


@pytest.mark.parametrize("members,why", [
    ({"/abs.ipynb": "{}"}, "outside itself"),
    ({"a/../../x.ipynb": "{}"}, "outside itself"),
    ({"C:/x.ipynb": "{}"}, "outside itself"),
    ({"big.bin": "x" * (2 * 2**20)}, "than the 1 MB"),
])
def test_unsafe_zips_are_refused_whole(tmp_path, members, why):
    archive = _zip(tmp_path / "a.zip", {f"{B}.ipynb": "{}", **members})
    with pytest.raises(ValueError, match=why):
        collect.extract_zip(archive, tmp_path / "out", max_mb=1)
    assert not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_before_it_is_extracted(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"big.bin": "\0" * (3 * 2**20)})  # compresses to a few KB
    assert archive.stat().st_size < 2**20
    with pytest.raises(ValueError, match="more than the 1 MB"):
        collect.extract_zip(archive, tmp_path / "out", max_mb=1)
    assert not (tmp_path / "out").exists()


def test_too_many_members_and_broken_zips_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "MAX_ENTRIES", 2)
    archive = _zip(tmp_path / "a.zip", {f"f{i}": "" for i in range(3)})
    with pytest.raises(ValueError, match="more than 2 files"):
        collect.extract_zip(archive, tmp_path / "out", max_mb=1)
    (tmp_path / "b.zip").write_bytes(b"PK not a zip")
    with pytest.raises(ValueError, match="cannot be read"):
        collect.extract_zip(tmp_path / "b.zip", tmp_path / "out", max_mb=1)


def test_roster(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("\ufeffLearner,email\nann,a@x\n\nbob,b@x\nann,a@x\n", encoding="utf-8")
    assert collect.read_roster(path) == ["ann", "bob"]
    path.write_text("name\nann\n")
    with pytest.raises(ValueError, match="no 'learner' column"):
        collect.read_roster(path)
    path.write_text("learner\n../etc\n")
    with pytest.raises(ValueError, match="cannot be a learner"):
        collect.read_roster(path)
