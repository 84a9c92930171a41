"""helper_utils.images: the JPEG walk that counts scans and coefficient memory before any pixel is decoded."""

import io
import struct

import pytest
from PIL import Image

from helper_utils.images import (ALLOWED_FORMATS, MAX_JPEG_SCANS, JpegLayout, QueryImageError, decode_image,
                                 jpeg_layout)


def _jpeg(mode="RGB", size=(16, 16), **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert(mode).save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("kwargs, mode, scans", [({}, "RGB", 1), ({"progressive": True}, "RGB", 10),
                                                  ({"progressive": True}, "L", 6), ({"progressive": True}, "CMYK", 18)])
def test_scans_are_counted_as_libjpeg_writes_them(kwargs, mode, scans):
    layout = jpeg_layout(_jpeg(mode, **kwargs))
    assert isinstance(layout, JpegLayout)
    assert layout.scans == scans and layout.progressive == bool(kwargs) and layout.junk == 0
    assert layout.scans <= MAX_JPEG_SCANS  # a photo as libjpeg writes it, progressive or not, is never refused
    assert (layout.width, layout.height) == (16, 16) and len(layout.sampling) == {"RGB": 3, "L": 1, "CMYK": 4}[mode]


def test_a_jpeg_inside_a_segment_is_not_counted():
    """An EXIF thumbnail is a whole JPEG inside APP1: skipped by the segment's length, as libjpeg skips it."""
    photo, thumbnail = _jpeg(), _jpeg(progressive=True)
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumbnail) + 8) + b"Exif\x00\x00" + thumbnail
    layout = jpeg_layout(photo[:2] + app1 + photo[2:])
    assert layout.scans == 1 and not layout.progressive and layout.junk == 0


def test_coefficient_memory_follows_the_chroma_sampling():
    assert jpeg_layout(_jpeg(subsampling=2)).coefficient_bytes == (4 + 1 + 1) * 64 * 2  # 4:2:0, 16x16: 6 blocks
    assert jpeg_layout(_jpeg(subsampling=0)).coefficient_bytes == (4 + 4 + 4) * 64 * 2  # 4:4:4: 12 blocks


def test_fill_bytes_are_allowed_and_junk_is_counted():
    photo = _jpeg()
    sof = photo.index(b"\xff\xc0")
    assert jpeg_layout(photo[:sof] + b"\xff" * 5 + photo[sof:]).junk == 0
    assert jpeg_layout(photo[:sof] + b"junk" * 10 + photo[sof:]).junk == 40


def test_megabytes_of_junk_are_refused_in_milliseconds():
    import time

    start = time.monotonic()
    with pytest.raises(QueryImageError, match="truncated or corrupt"):
        decode_image(b"\xff\xd8\xff\xe0" + bytes(9 * 1024 * 1024))
    assert time.monotonic() - start < 1  # Pillow alone reads junk a byte at a time: seconds


@pytest.mark.parametrize("size, draft", [((65500, 600), (16375, 150)), ((6000, 4000), (1500, 1000)),
                                         ((2048, 1536), (2048, 1536)), ((800, 600), (800, 600))])
def test_single_scan_jpegs_are_decoded_at_the_scale_that_keeps_them_small(size, draft):
    """A 65500x600 strip has a short side under the output size, yet must not be decoded whole (39 Mpx)."""
    from helper_utils.images import MAX_DRAFT_PIXELS, _draft_size

    assert _draft_size(*size, 1024) == draft and draft[0] * draft[1] <= MAX_DRAFT_PIXELS
    assert decode_image(_jpeg(size=(8000, 80))).size == (1024, 10)


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_every_allowed_format_decodes(fmt):
    buffer = io.BytesIO()
    Image.effect_noise((32, 24), 40).convert("RGB").save(buffer, format=fmt)
    assert decode_image(buffer.getvalue()).size == (32, 24)
