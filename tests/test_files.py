"""``atomic_path``: the one way the kit writes a checkpoint, a cache, an ONNX file or the README."""

import os

import pytest

from helper_utils.files import atomic_path


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(target.parent) == ["out.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_an_existing_files_permissions_survive_and_mode_sets_them(tmp_path):
    target = tmp_path / "README.md"
    target.write_text("old")
    target.chmod(0o644)
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.stat().st_mode & 0o777 == 0o644
    with atomic_path(tmp_path / "cache.npz", mode=0o640) as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "cache.npz").stat().st_mode & 0o777 == 0o640
