"""Hostile and odd inputs to the core kit: dataset archives and images. Each table row is one input.

The service's requests and the saved artifacts (search index, checkpoints, ONNX files) are in
``tests/going_further/test_bad_inputs_service.py``. Counts per category are the table lengths.
"""

from __future__ import annotations

import errno
import io
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helper_utils import archive
from helper_utils.archive import FetchError, fetch
from helper_utils.data import ClothingDataset
from helper_utils.going_further.export import resize_for_model
from helper_utils.images import MAX_UPLOAD_BYTES, QueryImageError, decode_image
from helper_utils.widgets import load_query_image

TINY_COUNTS = {split: {cls: 1 for cls in archive.CLASSES_10} for split in archive.SPLITS}
TOP = "clothing-dataset-small-master"


# --------------------------------------------------------------------------- archives


def _jpeg(color=(200, 30, 30), size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _archive(path: Path, extra=(), compression=zipfile.ZIP_STORED, skip: str = "", replace=None) -> Path:
    """A valid tiny archive of the dataset's shape (the pinned one in these tests), plus ``extra`` (name, bytes)
    entries, without the entry ``skip`` and with the bytes of ``replace`` (name -> bytes) instead of the usual."""
    entries = [(f"{TOP}/LICENSE", b"CC0\n")] + [(f"{TOP}/{split}/{cls}/{cls}_{i}.jpg", _jpeg())
                                                for split, per_class in TINY_COUNTS.items()
                                                for cls, n in per_class.items() for i in range(n)]
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr(f"{TOP}/", b"")
        for name, payload in entries + list(extra):
            if name != skip:
                zf.writestr(name, (replace or {}).get(name, payload))
    return path


def _scan_bomb(scans: int = 2000, size: int = 64) -> bytes:
    """A progressive JPEG whose last scan is repeated ``scans`` times: libjpeg would decode every copy."""
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 60).convert("RGB").save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    last_scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * scans + data[end:]


def _big_png() -> bytes:  # 16 Mpx of one colour: a few kB
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000), 90).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb(tmp_path):  # 60 MB of zeros in ~60 kB, named like a photo of the tree
    path = tmp_path / "bomb.zip"
    _archive(path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{TOP}/train/dress/huge.jpg", bytes(60 * 1024 * 1024))
    return path


def _many_files(tmp_path):  # more entries than the dataset could ever hold, each a valid-looking photo
    return _archive(tmp_path / "many.zip", [(f"{TOP}/train/dress/extra_{i}.jpg", b"x")
                                            for i in range(archive._MAX_ENTRIES + 1)])


def _duplicates(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name": that is the point
        return _archive(tmp_path / "dup.zip", [(f"{TOP}/train/dress/dress_0.jpg", _jpeg((0, 0, 0)))])


def _non_utf8_name(tmp_path):
    path = _archive(tmp_path / "latin.zip", [(f"{TOP}/train/dress/caf\u00e9.jpg", _jpeg())])
    raw = path.read_bytes().replace("caf\u00e9".encode(), b"caf\xff\xa9")  # flagged UTF-8, not UTF-8
    path.write_bytes(raw)
    return path


ARCHIVES = {
    "zip-bomb-entry": (_bomb, "zip bomb"),
    "too-many-entries": (_many_files, "entries; the dataset has about 3,800"),
    "duplicate-names": (_duplicates, "duplicated entry name"),
    "zip-slip-dotdot": (lambda t: _archive(t / "a.zip", [(f"{TOP}/../evil.jpg", b"x")]), "outside the dataset's tree"),
    "deeper-folder": (lambda t: _archive(t / "a.zip", [(f"{TOP}/train/dress/sub/x.jpg", b"x")]), "outside the dataset's tree"),
    "unknown-class": (lambda t: _archive(t / "a.zip", [(f"{TOP}/train/robes/x.jpg", b"x")]), "outside the dataset's tree"),
    "unknown-split": (lambda t: _archive(t / "a.zip", [(f"{TOP}/extra/dress/x.jpg", b"x")]), "outside the dataset's tree"),
    "not-an-image-name": (lambda t: _archive(t / "a.zip", [(f"{TOP}/train/dress/run.sh", b"x")]), "outside the dataset's tree"),
    "top-level-file": (lambda t: _archive(t / "a.zip", [(f"{TOP}/.bashrc", b"x")]), "outside the dataset's tree"),
    "backslash-name": (lambda t: _archive(t / "a.zip", [(f"{TOP}/train/dress/..\\..\\x.jpg", b"x")]), "outside the dataset's tree"),
    "non-utf8-name": (_non_utf8_name, "not valid UTF-8"),
    "extra-jpeg-scan-bomb": (lambda t: _archive(t / "a.zip", [(f"{TOP}/train/dress/x.jpeg", _scan_bomb())]),
                             "an extra file 'train/dress/x.jpeg'"),
    "extra-16-megapixel-png": (lambda t: _archive(t / "a.zip", [(f"{TOP}/train/hat/big.png", _big_png())]),
                               "an extra file 'train/hat/big.png'"),
    "extra-jpg-in-a-class": (lambda t: _archive(t / "a.zip", [(f"{TOP}/test/skirt/new.jpg", _jpeg())]),
                             "an extra file 'test/skirt/new.jpg'"),
    "missing-photo": (lambda t: _archive(t / "a.zip", skip=f"{TOP}/validation/shoes/shoes_0.jpg"),
                      "'validation/shoes/shoes_0.jpg' is missing"),
    "missing-license": (lambda t: _archive(t / "a.zip", skip=f"{TOP}/LICENSE"), "'LICENSE' is missing"),
    "changed-photo": (lambda t: _archive(t / "a.zip", replace={f"{TOP}/train/pants/pants_0.jpg": _jpeg((1, 2, 3))}),
                      "'train/pants/pants_0.jpg' differs from the pinned file"),
}


@pytest.fixture
def root(isolated_data_root, monkeypatch, tmp_path_factory):
    """An empty data root, and the tiny archive of ``_archive()`` as the pinned one."""
    monkeypatch.setattr(archive, "EXPECTED_COUNTS", TINY_COUNTS)
    with zipfile.ZipFile(_archive(tmp_path_factory.mktemp("pinned") / "pinned.zip")) as zf:
        pinned = archive.listing(zf, TOP)
    monkeypatch.setattr(archive, "pinned_files", lambda: pinned)
    isolated_data_root.mkdir()
    return isolated_data_root


@pytest.mark.parametrize("case", ARCHIVES)
def test_hostile_archive_is_refused_before_extracting(root, tmp_path, case, monkeypatch):
    build, message = ARCHIVES[case]
    zip_path = build(tmp_path)
    extracted = []
    monkeypatch.setattr(archive, "_extract_all", lambda *args: extracted.append(args))
    with pytest.raises(FetchError, match=message.replace("(", r"\(")):
        fetch(zip_path, quiet=True)
    assert not extracted and sorted(os.listdir(root)) == []


def test_total_unpacked_size_is_capped(root, tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "_MAX_UNCOMPRESSED", 100 * 1024)  # the tiny archive holds ~40 kB of photos
    zip_path = _archive(tmp_path / "big.zip", [(f"{TOP}/train/dress/big_{i}.jpg", os.urandom(30 * 1024))
                                               for i in range(3)])
    with pytest.raises(FetchError, match="would unpack to"):
        fetch(zip_path, quiet=True)


def test_a_good_archive_still_passes(root, tmp_path):
    assert (fetch(_archive(tmp_path / "good.zip"), quiet=True) / ".complete").is_file()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_fetchs_work_folder_is_removed_even_when_the_dataset_exists(root, tmp_path):
    fetch(_archive(tmp_path / "good.zip"), quiet=True)
    dead = root / ".fetch-killed"
    (dead / "extract").mkdir(parents=True)
    (dead / archive._OWNER_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": archive.socket.gethostname(),
                                                     "started": 0}))
    live = root / ".fetch-running"  # another fetch, still running: must stay
    live.mkdir()
    (live / archive._OWNER_FILE).write_text(json.dumps({"pid": os.getppid(), "host": archive.socket.gethostname(),
                                                     "started": 0}))
    foreign = root / "fetch-notes"  # not ours: never touched
    foreign.mkdir()
    fetch(quiet=True)  # the dataset is there: returns early, after cleaning
    assert not dead.exists() and live.exists() and foreign.exists()


def test_a_read_only_data_root_is_a_fetch_error_that_says_what_to_do(root, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(archive.tempfile, "mkdtemp", refuse)  # root cannot be denied by chmod: tests may run as root
    with pytest.raises(FetchError, match=r"cannot write to (.|\n)*FASHION_KIT_DATA=DIR make data"):
        fetch(_archive(tmp_path / "good.zip"), quiet=True)


# --------------------------------------------------------------------------- images


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _with_declared_size(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` (valid CRC), the data of a tiny image after it."""
    ihdr = png.index(b"IHDR")
    body = struct.pack(">II", width, height) + png[ihdr + 12:ihdr + 17]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF)
    return png[:ihdr + 4] + body + crc + png[ihdr + 21:]


def _jpeg_declaring(width: int, height: int, progressive: bool = False, subsampling: int = 2) -> bytes:
    """A tiny JPEG whose frame header declares ``width x height`` (the data stays that of 16x16 pixels)."""
    raw = bytearray(_encoded(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG", progressive=progressive,
                             subsampling=subsampling))
    sof = raw.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def _png_with_chunk(kind: bytes, body: bytes) -> bytes:
    """A small PNG with one more chunk (``kind``, ``body``) before its image data."""
    png = _encoded(Image.new("RGB", (8, 8), (20, 30, 40)), "PNG")
    at = png.index(b"IDAT") - 4
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return png[:at] + chunk + png[at:]


def _compressed_zeros(megabytes: int) -> bytes:
    return zlib.compress(bytes(megabytes * 1024 * 1024), 9)


def _webp_over_its_limit() -> bytes:  # 2600x2400 of one colour: 6.2 Mpx, over the WebP limit, a few kB
    return _encoded(Image.new("RGB", (2600, 2400), (200, 10, 10)), "WEBP", quality=10)


def _tiff(mode, value):
    return _encoded(Image.new(mode, (8, 8), value), "TIFF")


def _maybe(fmt: str, mode: str = "RGB"):
    try:
        return _encoded(Image.new(mode, (16, 16)), fmt)
    except (KeyError, OSError):  # no encoder for it in this Pillow build
        return None


IMAGES = {
    "tiff-lab": (_tiff("LAB", (50, 0, 0)), "TIFF"),
    "tiff-16-bit": (_tiff("I;16", 4000), "TIFF"),
    "tiff-float": (_tiff("F", 0.5), "TIFF"),
    "jpeg-2000": (_maybe("JPEG2000"), "JPEG 2000"),
    "ico": (_maybe("ICO"), "ICO"),
    "eps": (_maybe("EPS"), "EPS"),
    "gif": (_maybe("GIF", "P"), "GIF"),
    "bmp": (_maybe("BMP"), "BMP"),
    "png-bomb-7700x7700": (_with_declared_size(_encoded(Image.new("L", (8, 8)), "PNG"), 7700, 7700), "Mpx"),
    "jpeg-9000x9000": (_jpeg_declaring(9000, 9000), "Mpx"),
    "jpeg-65500x65500": (_jpeg_declaring(65500, 65500), "Mpx"),
    "jpeg-scan-bomb": (_scan_bomb(), "JPEG with 2010 scans"),
    "progressive-jpeg-over-the-memory-limit": (_jpeg_declaring(6000, 6000, progressive=True, subsampling=0),
                                               "progressive JPEG of 6000x6000"),
    "webp-over-its-limit": (_webp_over_its_limit(), "WEBP images may have at most 6 Mpx"),
    "png-iccp-chunk-bomb": (_png_with_chunk(b"iCCP", b"icc\x00\x00" + _compressed_zeros(64)), "truncated or corrupt"),
    "png-ztxt-chunk-bomb": (_png_with_chunk(b"zTXt", b"comment\x00\x00" + _compressed_zeros(64)), "truncated or corrupt"),
    "truncated-png": (_encoded(Image.effect_noise((64, 64), 40), "PNG")[:300], "truncated or corrupt"),
    "empty": (b"", "empty"),
    "over-the-size-limit": (b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES), "MB limit"),
    "html": (b"<html><body>rate limited</body></html>", "not a readable image"),
}


@pytest.mark.parametrize("case", IMAGES)
def test_hostile_image_is_a_clear_query_image_error(case):
    payload, message = IMAGES[case]
    if payload is None:
        pytest.skip(f"this Pillow cannot write {case}")
    with pytest.raises(QueryImageError, match=message) as info:
        load_query_image(payload, "photo")
    assert " at 0x" not in str(info.value) and "BytesIO" not in str(info.value)  # no reprs


def test_png_bomb_is_refused_without_decoding(monkeypatch):
    """The pixel limit is read from the header: the decoder never runs."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded a bomb"))
    with pytest.raises(QueryImageError, match="Mpx"):
        decode_image(IMAGES["png-bomb-7700x7700"][0])


def _exif_rotated() -> bytes:
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    image.paste((200, 0, 0), (0, 0, 10, 20))  # a red band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _encoded(image, "JPEG", exif=exif.tobytes(), quality=95)


def _deep_grey() -> bytes:
    array = np.tile(np.linspace(0, 65535, 32, dtype=np.uint16), (32, 1))
    return _encoded(Image.fromarray(array), "PNG")


def _transparent() -> bytes:
    image = Image.new("RGBA", (32, 32), (10, 200, 30, 0))  # fully transparent green: shows white
    image.paste((10, 200, 30, 255), (0, 0, 16, 32))
    return _encoded(image, "PNG")


def _palette_transparent() -> bytes:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    image.paste(1, (0, 0, 16, 32))
    return _encoded(image, "PNG", transparency=0)


def _grey_alpha() -> bytes:
    return _encoded(Image.new("LA", (32, 32), (90, 0)), "PNG")


def _animated(fmt: str, frames: int = 1000) -> bytes:
    """``frames`` frames of 16x16: the first red, the others blue; only the first may be decoded."""
    images = [Image.new("RGB", (16, 16), (230, 10, 10))] + [Image.new("RGB", (16, 16), (10, 10, 230))] * (frames - 1)
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return _encoded(images[0], fmt, save_all=True, append_images=images[1:], duration=10, **extra)


HELD = {  # probes the kit already withstood, kept as tests: (payload, colour of the decoded first pixel)
    "animated-webp-1000-frames": (lambda: _animated("WEBP"), (230, 10, 10)),
    "apng-1000-frames": (lambda: _animated("PNG"), (230, 10, 10)),
    "1x1-png": (lambda: _encoded(Image.new("RGB", (1, 1), (5, 150, 250)), "PNG"), (5, 150, 250)),
    "cmyk-jpeg": (lambda: _encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95), (255, 0, 0)),
}


@pytest.mark.parametrize("case", HELD)
def test_held_probe_decodes_its_first_frame_quickly(case):
    make, colour = HELD[case]
    payload = make()
    start = time.monotonic()
    pixel = np.asarray(decode_image(payload)).reshape(-1, 3)[0]
    assert time.monotonic() - start < 5  # one frame, no chunk inflated: milliseconds on a laptop
    np.testing.assert_allclose(pixel, colour, atol=12)


SAME_PIXELS = {"exif-rotated-jpeg": _exif_rotated, "16-bit-grey-png": _deep_grey, "transparent-rgba-png": _transparent,
               "palette-with-transparency": _palette_transparent, "grey-alpha-png": _grey_alpha}


@pytest.mark.parametrize("case", SAME_PIXELS)
def test_dataset_and_query_decode_the_same_file_to_the_same_pixels(case, make_imagefolder):
    root = make_imagefolder(classes=["dress"], splits=["test"], per_class=1)
    payload = SAME_PIXELS[case]()
    (root / "clothing-dataset-small" / "test" / "dress" / "odd.png").write_bytes(payload)
    dataset = ClothingDataset("test", classes=["dress"], root=root, cache=False)
    row = [Path(p).name for p, _ in dataset.samples].index("odd.png")
    query = resize_for_model(load_query_image(payload), 64)  # what the service and the widget compute
    np.testing.assert_array_equal(dataset.images[row], query)


def test_the_one_decoder_applies_exif_scales_16_bit_and_whitens_transparency():
    rotated = decode_image(_exif_rotated())
    top, bottom = rotated.getpixel((10, 2)), rotated.getpixel((10, 38))
    assert rotated.size == (20, 40) and top[0] > 150 and top[1] < 60 and min(bottom) > 200  # the band is on top
    grey = np.asarray(decode_image(_deep_grey()))[0, :, 0]
    assert grey[0] == 0 and grey[-1] == 255 and len(set(grey.tolist())) == 32  # scaled, not clipped at 255
    assert decode_image(_transparent()).getpixel((31, 0)) == (255, 255, 255)
    assert decode_image(_palette_transparent()).getpixel((31, 0)) == (255, 255, 255)


# --------------------------------------------------------------------------- the data folder


def _loops(folder: Path) -> list[str]:  # two links back to the split folder: a walk that follows them never ends
    os.symlink("..", folder / "up1")
    os.symlink("..", folder / "up2")
    return ["up1", "up2"]


def _folder_outside(folder: Path) -> list[str]:
    os.symlink(Path(__file__).parent, folder / "elsewhere")  # tests/ holds .py files, and a data/ in some kits
    return ["elsewhere"]


def _file_outside(folder: Path) -> list[str]:
    outside = folder.parents[3] / "secret.jpg"
    outside.write_bytes(_jpeg())
    os.symlink(outside, folder / "linked.jpg")
    return ["linked.jpg"]


def _non_utf8_file(folder: Path) -> list[str]:
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes on a UTF-8 system
    (folder / name).write_bytes(_jpeg())
    return ["caf\\xe9.jpg"]


def _control_characters(folder: Path) -> list[str]:
    (folder / "two\nlines.jpg").write_bytes(_jpeg())
    return ["two\\nlines.jpg"]


DATA_FOLDER = {  # name: (what to put into train/dress, reason the warning gives)
    "symlink-loop": (_loops, "a loop"),
    "link-to-a-folder-outside": (_folder_outside, "outside the dataset folder"),
    "link-to-a-file-outside": (_file_outside, "outside the dataset folder"),
    "non-utf8-file-name": (_non_utf8_file, "not valid UTF-8"),
    "control-characters-in-a-name": (_control_characters, "control characters"),
}


@pytest.mark.parametrize("case", DATA_FOLDER)
def test_the_data_folder_cannot_lead_the_dataset_astray(case, make_imagefolder):
    root = make_imagefolder(classes=["dress", "hat"], splits=["train"], per_class=2)
    folder = root / "clothing-dataset-small" / "train" / "dress"
    make, reason = DATA_FOLDER[case]
    names = make(folder)
    with pytest.warns(UserWarning) as record:
        dataset = ClothingDataset("train", classes=["dress", "hat"], root=root)  # returns: no endless walk
    messages = [str(w.message) for w in record]
    for name in names:
        assert any(m.startswith("skipped ") and name in m and reason in m and "\n" not in m for m in messages), messages
    assert sorted(Path(p).name for p, _ in dataset.samples) == ["dress_0.jpg", "dress_1.jpg", "hat_0.jpg", "hat_1.jpg"]


def test_the_cache_command_names_a_non_utf8_file_on_one_line(make_imagefolder, capsys):
    from helper_utils.data import main

    root = make_imagefolder(per_class=1)
    _non_utf8_file(root / "clothing-dataset-small" / "validation" / "hat")
    assert main(["cache", "--root", str(root), "--image-size", "8"]) == 0  # the other photos are cached
    err = capsys.readouterr().err
    assert "warning: skipped " in err and "caf\\xe9.jpg: its name is not valid UTF-8" in err
    assert "Traceback" not in err and "codec" not in err
