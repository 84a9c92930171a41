"""tools.pin_dataset: the pinned file list, written from an archive's central directory, and checked against one."""

import zipfile

from helper_utils import archive
from tools import pin_dataset


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("clothing-dataset-small-abc/", b"")
        for name, data in files.items():
            zf.writestr(f"clothing-dataset-small-abc/{name}", data)
    return path


def test_the_list_holds_every_file_with_its_size_and_crc(tmp_path):
    photo = b"\xff\xd8x"
    text = pin_dataset.pinned_text(_zip(tmp_path / "a.zip", {"LICENSE": b"CC0", "train/hat/b.jpg": photo}))
    rows = [line.split("\t") for line in text.splitlines() if not line.startswith("#")]
    assert rows == [["LICENSE", "3", f"{zipfile.crc32(b'CC0'):08x}"], ["train/hat/b.jpg", "3", f"{zipfile.crc32(photo):08x}"]]


def test_check_says_whether_an_archive_matches_the_committed_list(tmp_path, monkeypatch, capsys):
    path = _zip(tmp_path / "a.zip", {"LICENSE": b"CC0"})
    monkeypatch.setattr(archive, "PINNED_FILES", tmp_path / "files.txt")
    assert pin_dataset.main([str(path)]) == 0 and "wrote" in capsys.readouterr().out
    assert pin_dataset.main(["--check", str(path)]) == 0
    assert pin_dataset.main(["--check", str(_zip(tmp_path / "b.zip", {"LICENSE": b"MIT"}))]) == 1
    assert "does NOT match" in capsys.readouterr().out
