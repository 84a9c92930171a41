"""One image decoder for the whole kit: the dataset, the notebook widget and the web service.

Every photo, whether it comes from the dataset folder, the upload button of notebook 06 or a
``POST`` to the service, goes through :func:`decode_image`, so the same file always becomes
the same pixels:

* EXIF orientation is applied (a phone photo taken upright stays upright);
* 16-bit greyscale is scaled to 8 bits (``value / 257``), never clipped at 255;
* transparent pixels are composited on white (product photos sit on white);
* palette, greyscale and CMYK images become RGB.

What it refuses, with a :class:`QueryImageError` that says why and what to do, before a decoder
runs (from the file's header) whenever it can:

* formats outside :data:`ALLOWED_FORMATS`. JPEG and PNG are what cameras and shops produce;
  WebP is accepted because browsers save product photos as WebP, its decoder (libwebp) is
  small and continuously fuzzed, and it passes the same pixel limit as PNG. TIFF (dozens of
  codecs and modes: LAB, float, 16-bit), JPEG 2000, ICO, GIF, BMP and EPS (which would start
  Ghostscript) are never handed to a decoder;
* more than ``max_bytes`` of data (:data:`MAX_UPLOAD_BYTES`, the one upload limit of the kit);
* more pixels than the limits. The decoder's memory is what they bound, so each format gets
  the limit its decoder needs: a single-scan JPEG is decoded at a reduced scale (``Image.draft``:
  1/2 to 1/8, in libjpeg itself), so up to :data:`MAX_PIXELS` costs little; a PNG must be decoded
  whole, so it gets the lower :data:`MAX_FULL_DECODE_PIXELS`, and a WebP, whose decoder keeps two
  more copies, :data:`MAX_WEBP_PIXELS`; a progressive (or any
  multi-scan) JPEG keeps every DCT coefficient of the whole image while it decodes, 2 bytes per
  coefficient, so its coefficient memory, computed from the header's size and chroma sampling,
  may be at most :data:`MAX_JPEG_COEFFICIENT_BYTES`;
* JPEGs with more than :data:`MAX_JPEG_SCANS` scans, counted in the file before decoding. Every
  scan of a progressive JPEG walks the whole image again, so a file that repeats its last scan
  thousands of times (a "scan bomb") costs minutes of CPU in a few hundred kilobytes; a real
  photo has one scan, or 6 to 18 when it is progressive (libjpeg's scripts: 10 for colour);
* truncated or corrupt files.

The result is shrunk to at most :data:`MAX_SIDE` pixels a side: the models see 64x64. How much
memory a decode takes at these limits is measured by ``python -m tools.decode_memory``; the
service decodes uploads in worker processes with a hard time limit
(:mod:`helper_utils.going_further.decoding`).
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from helper_utils.files import shown_path

__all__ = ["QueryImageError", "MAX_UPLOAD_BYTES", "MAX_PIXELS", "MAX_FULL_DECODE_PIXELS", "MAX_WEBP_PIXELS", "MAX_JPEG_SCANS",
           "MAX_JPEG_COEFFICIENT_BYTES", "MAX_SIDE", "ALLOWED_FORMATS", "JpegLayout", "jpeg_layout", "decode_image",
           "resize_for_model"]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a phone photo is 2-8 MB; the models see 64x64 pixels anyway
MAX_PIXELS = 40_000_000  # a single-scan JPEG: draft-decoded at 1/2..1/8 scale, the pixels stay a few MB
MAX_FULL_DECODE_PIXELS = 12_000_000  # a PNG decodes whole, then converts: palette (1 B/px) -> RGBA (4) -> RGBa (4)
MAX_WEBP_PIXELS = 6_000_000  # libwebp keeps two RGBA canvases beside Pillow's RGBA image and its RGBa copy: 16 B/px
MAX_JPEG_SCANS = 32  # a photo has 1 scan, a progressive one 6 to 18 (libjpeg's scripts); a scan bomb thousands
MAX_JPEG_COEFFICIENT_BYTES = 64 * 1024 * 1024  # multi-scan JPEGs keep all coefficients: a 12 Mpx 4:2:0 photo is 36 MB
MAX_DRAFT_PIXELS = 4_000_000  # a single-scan JPEG is decoded at the scale that keeps it under this (RGB: 12 MB)
MAX_SIDE = 1024  # decoded photos are shrunk to this many pixels a side, right away
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")  # what Pillow may try; nothing else reaches a decoder
_ACCEPTED = ALLOWED_FORMATS + ("MPO",)  # MPO: a JPEG with a second picture (phone cameras); Pillow's JPEG opener names it
_DRAFT_FORMATS = ("JPEG", "MPO")  # decoders that can decode at 1/2, 1/4 or 1/8 scale
_HINT = "upload a JPEG, PNG or WebP photo"

# The first bytes of formats we refuse, so that the message can name what was sent.
_SIGNATURES = (
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"),
    (b"\x00\x00\x01\x00", "ICO"), (b"\x00\x00\x02\x00", "CUR"), (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"%PDF", "PDF"), (b"8BPS", "Photoshop"),
    (b"<svg", "SVG"), (b"<?xml", "XML/SVG"),
)


class QueryImageError(ValueError):
    """An image that cannot be used; the message says why and what to do."""


def decode_image(source: bytes | bytearray | str | os.PathLike, *, name: str | None = None,
                 max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
                 max_full_decode_pixels: int = MAX_FULL_DECODE_PIXELS, max_side: int = MAX_SIDE) -> Image.Image:
    """Decode an image file or its bytes into an RGB PIL image, the one way the kit decodes images.

    Args:
        source: the file's bytes, or a path to it.
        name: how messages call the image (default: the path, or "the upload").
        max_bytes: larger data is refused before decoding.
        max_pixels: width x height above this is refused, read from the header (JPEG).
        max_full_decode_pixels: the same for formats decoded whole (PNG; WebP: at most ``MAX_WEBP_PIXELS``).
        max_side: the result is shrunk (aspect kept) to at most this many pixels a side.

    Returns:
        An RGB ``PIL.Image`` of at most ``max_side x max_side`` pixels.

    Raises:
        QueryImageError: empty, too large, a format outside ``ALLOWED_FORMATS``, too many
            pixels or JPEG scans, truncated or corrupt; the message names the image and what to do.
    """
    data, name = _read(source, name, max_bytes)
    layout = _jpeg_structure(data, name) if data.startswith(b"\xff\xd8\xff") else None
    image = _open(data, name)
    with image:
        width, height = image.size
        if image.format in _DRAFT_FORMATS:
            _check_jpeg(layout or jpeg_layout(data), name, width, height, max_pixels)
        else:
            limit = max_full_decode_pixels if image.format != "WEBP" else min(max_full_decode_pixels, MAX_WEBP_PIXELS)
            if width * height > limit:
                raise QueryImageError(f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} Mpx); "
                                      f"{image.format} images may have at most {limit / 1e6:.0f} Mpx: "
                                      "send a smaller photo")
        orientation = _orientation(image)  # read now: the shrunk copy below no longer carries the EXIF
        try:
            if image.format in _DRAFT_FORMATS:
                image.draft("RGB", _draft_size(width, height, max_side))  # 1/2..1/8 scale in libjpeg itself
            image.load()
            rgb = _to_rgb(_shrink(image, max_side))  # shrink first: every later copy is small
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, MemoryError):
            raise QueryImageError(f"{name} is not a readable image: the {image.format} file is truncated or "
                                  f"corrupt; {_HINT}") from None
    return rgb.transpose(_TURNS[orientation]) if orientation in _TURNS else rgb


def resize_for_model(image: Image.Image, size: int = 64) -> np.ndarray:
    """An RGB PIL image -> uint8 ``(size, size, 3)``: resized as ``ClothingDataset`` resizes the catalog.

    Bilinear with antialiasing (PIL shrinks with a filter as wide as the reduction), the one
    resize of the kit: a catalog photo sent as a query becomes the catalog's pixels.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _open(data: bytes, name: str) -> Image.Image:
    """``Image.open`` on the allowed formats only, with a message naming what was sent when it fails."""
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:  # Pillow's own ceiling, far above ours: a header that lies
        raise QueryImageError(f"{name} declares over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx; images may have "
                              f"at most {MAX_PIXELS / 1e6:.0f} Mpx: send a smaller photo") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        kind = _sniff(data)
        if kind in ALLOWED_FORMATS:  # the right signature, then nothing usable: cut short or damaged
            raise QueryImageError(f"{name} is not a readable image: the {kind} file is truncated or corrupt; "
                                  f"{_HINT}") from None
        if kind:
            raise QueryImageError(f"{name} is not a readable image here: it is a {kind} file, which is "
                                  f"not accepted; {_HINT}") from None
        raise QueryImageError(f"{name} is not a readable image (not a JPEG, PNG or WebP file); {_HINT}") from None
    if image.format not in _ACCEPTED:  # defence in depth: Image.open was told the formats already
        image.close()
        raise QueryImageError(f"{name} is a {image.format} file, which is not accepted; {_HINT}")
    return image


def _jpeg_structure(data: bytes, name: str) -> JpegLayout:
    """The JPEG's layout, or an error for one without a frame or with junk between its segments.

    Pillow skips junk between markers one byte at a time, in Python: an upload made of it would
    cost far more than a photo before the first pixel. libjpeg calls any such byte "corrupt
    data"; a photo has none.
    """
    layout = jpeg_layout(data)
    if not layout.sampling or layout.junk > _MAX_JPEG_JUNK:
        raise QueryImageError(f"{name} is not a readable image: the JPEG file is truncated or corrupt; {_HINT}")
    return layout


def _check_jpeg(layout: JpegLayout, name: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse, from the file alone, a JPEG whose decoding would cost more than a photo's."""
    if width * height > max_pixels:
        raise QueryImageError(f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} Mpx); "
                              f"JPEG images may have at most {max_pixels / 1e6:.0f} Mpx: send a smaller photo")
    if layout.scans > MAX_JPEG_SCANS:
        raise QueryImageError(f"{name} is a JPEG with {layout.scans} scans; a photo has 1, or up to 18 when it "
                              f"is progressive, and at most {MAX_JPEG_SCANS} are accepted: save it again as a "
                              "normal JPEG")
    if layout.multi_scan and layout.coefficient_bytes > MAX_JPEG_COEFFICIENT_BYTES:
        most = MAX_JPEG_COEFFICIENT_BYTES / layout.coefficient_bytes * width * height
        raise QueryImageError(f"{name} is a progressive JPEG of {width}x{height} pixels; decoding one holds the "
                              f"whole image in memory, so at this chroma sampling it may have at most "
                              f"{most / 1e6:.0f} Mpx: send a smaller photo or a baseline JPEG")


def _draft_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for: at least ``max_side`` a side when the photo has it, at most
    ``MAX_DRAFT_PIXELS`` decoded (a 65500x600 strip must not be decoded whole because its short side is short)."""
    fits = max(1, min(width // max_side, height // max_side))  # both sides stay at least max_side
    scale = max(s for s in (1, 2, 4, 8) if s <= fits)  # libjpeg scales by powers of two
    while scale < 8 and (width / scale) * (height / scale) > MAX_DRAFT_PIXELS:
        scale *= 2
    return max(1, width // scale), max(1, height // scale)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):  # a damaged EXIF block: show the pixels as stored
        return 1


_ORIENTATION = 0x0112  # the EXIF tag
_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}  # as PIL.ImageOps.exif_transpose turns, applied after shrinking


# --------------------------------------------------------------------------- JPEG structure, read without decoding

@dataclass(frozen=True)
class JpegLayout:
    """What a JPEG's markers say about the cost of decoding it.

    Attributes:
        scans: start-of-scan markers before the end of the (first) image.
        progressive: the frame is progressive (SOF2, SOF6, SOF10, SOF14).
        sampling: ``(h, v)`` sampling factors of each component (three for YCbCr, four for CMYK).
        width, height: the frame's size in pixels.
        junk: bytes between segments that belong to none (outside the entropy-coded data).
    """

    scans: int
    progressive: bool
    sampling: tuple[tuple[int, int], ...]
    width: int
    height: int
    junk: int = 0

    @property
    def multi_scan(self) -> bool:
        """libjpeg keeps the whole image's coefficients while decoding: progressive or more than one scan."""
        return self.progressive or self.scans > 1

    @property
    def coefficient_bytes(self) -> int:
        """Memory of the whole-image coefficient buffer: 64 coefficients x 2 bytes per 8x8 block per component."""
        if not self.sampling:
            return 0
        h_max, v_max = max(h for h, _ in self.sampling), max(v for _, v in self.sampling)
        blocks = sum(math.ceil(math.ceil(self.width * h / h_max) / 8) * math.ceil(math.ceil(self.height * v / v_max) / 8)
                     for h, v in self.sampling)
        return blocks * 64 * 2


_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # 0xFF then a marker code: not stuffing, restart or fill
_STANDALONE = {0x01, 0xD8}  # markers without a length field (RSTn and fill bytes never match _NEXT_MARKER)
_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE_FRAMES = {0xC2, 0xC6, 0xCA, 0xCE}
_SOS, _EOI = 0xDA, 0xD9
_MAX_JPEG_JUNK = 4096  # bytes outside any segment: libjpeg warns at the first one; a photo has none


def jpeg_layout(data: bytes) -> JpegLayout:
    """Walk a JPEG's markers (no pixel is decoded) and count its scans.

    Segments are skipped by their length field, as libjpeg skips them, so an EXIF thumbnail
    inside APP1 is not counted; entropy-coded data is skipped by searching for the next marker
    (a regular expression, in C, never a Python loop over the bytes). The walk ends at the
    first EOI (an MPO's second picture is never decoded) or where the data ends.
    """
    scans, progressive, sampling, width, height, junk = 0, False, (), 0, 0, 0
    position, in_scan = 2, False  # after SOI
    while True:
        found = _NEXT_MARKER.search(data, position)
        if found is None:
            junk += 0 if in_scan else len(data) - position
            break
        if not in_scan:
            junk += len(data[position:found.start()].lstrip(b"\xff"))  # fill bytes (0xFF) before a marker are allowed
        marker, position = data[found.start() + 1], found.end()
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            continue
        length = int.from_bytes(data[position:position + 2], "big")
        segment = data[position + 2:position + length]
        if marker in _FRAMES and len(segment) >= 6 and not sampling:
            height, width, count = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"), segment[5]
            sampling = tuple((max(1, b >> 4), max(1, b & 15)) for b in segment[7:6 + 3 * count:3])
            progressive = marker in _PROGRESSIVE_FRAMES
        elif marker == _SOS:
            scans += 1
        in_scan = marker == _SOS  # entropy-coded data follows a scan header: not junk
        position += max(length, 2)
    return JpegLayout(scans, progressive, sampling, width, height, junk)


def _read(source, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    """The bytes of ``source`` (bounded by ``max_bytes``) and the name messages use."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "the upload"
    else:
        path = Path(source)
        name = name or shown_path(path)
        try:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)  # one byte more tells "too large" apart, without reading it all
        except OSError as err:
            raise QueryImageError(f"{name} cannot be read ({err.strerror or type(err).__name__})") from None
    if not data:
        raise QueryImageError(f"{name} is empty (0 bytes); {_HINT}")
    if len(data) > max_bytes:
        raise QueryImageError(f"{name} is larger than the {max_bytes / 2**20:.0f} MB limit; send a smaller photo")
    return data, name


def _sniff(data: bytes) -> str | None:
    """The format's name from the first bytes (an allowed one or a refused one), ``None`` when unknown."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIC/AVIF"
    return None


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """At most ``max_side`` pixels a side (aspect kept), in a mode that resizes exactly (RGBA, I, L, RGB...)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        image = image.convert("I")  # 16-bit grey: resized as 32-bit integers, scaled to 8 bits afterwards
    elif image.mode in ("P", "PA", "1"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    if max(image.size) > max_side:
        image = image.copy() if image.readonly else image
        image.thumbnail((max_side, max_side))  # antialiased; alpha premultiplied while resampling
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB: 16-bit scaled to 8 bits, transparency composited on white, palettes expanded."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # PNG stores 16-bit grey as 0..65535: scale (65535 -> 255), do not clip at 255 as convert("L") would
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # product photos sit on white
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
