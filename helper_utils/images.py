"""One image decoder for the whole kit: the dataset, the notebook widget and the web service.

Every photo, whether it comes from the dataset folder, the upload button of notebook 06 or a
``POST`` to the service, goes through :func:`decode_image`, so the same file always becomes
the same pixels:

* EXIF orientation is applied (a phone photo taken upright stays upright);
* 16-bit greyscale is scaled to 8 bits (``value / 257``), never clipped at 255;
* transparent pixels are composited on white (product photos sit on white);
* palette, greyscale and CMYK images become RGB.

What it refuses, with a :class:`QueryImageError` that says why and what to do:

* formats outside :data:`ALLOWED_FORMATS`. JPEG and PNG are what cameras and shops produce;
  WebP is accepted because browsers save product photos as WebP, its decoder (libwebp) is
  small and continuously fuzzed, and it passes the same pixel limit as PNG. TIFF (dozens of
  codecs and modes: LAB, float, 16-bit), JPEG 2000, ICO, GIF, BMP and EPS (which would start
  Ghostscript) are never handed to a decoder;
* more than ``max_bytes`` of data (:data:`MAX_UPLOAD_BYTES`, the one upload limit of the kit);
* more pixels than the limit, checked from the header *before* decoding. A JPEG is decoded
  at a reduced scale (``Image.draft``: 1/2 to 1/8, in the decoder itself), so up to
  :data:`MAX_PIXELS` costs little memory; a PNG or WebP must be decoded whole, so it gets the
  lower :data:`MAX_FULL_DECODE_PIXELS` (at most 64 MB as RGBA). A 173 KB PNG declaring
  7700x7700 pixels is refused without allocating its 237 MB;
* truncated or corrupt files.

The result is shrunk to at most :data:`MAX_SIDE` pixels a side: the models see 64x64.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["QueryImageError", "MAX_UPLOAD_BYTES", "MAX_PIXELS", "MAX_FULL_DECODE_PIXELS", "MAX_SIDE",
           "ALLOWED_FORMATS", "decode_image"]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a phone photo is 2-8 MB; the models see 64x64 pixels anyway
MAX_PIXELS = 40_000_000  # a 40 Mpx JPEG, draft-decoded at 1/8 scale: ~2 MB of pixels
MAX_FULL_DECODE_PIXELS = 16_000_000  # PNG/WebP decode whole: 16 Mpx x 4 bytes (RGBA) = 64 MB at most
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
        max_full_decode_pixels: the same for formats decoded whole (PNG, WebP).
        max_side: the result is shrunk (aspect kept) to at most this many pixels a side.

    Returns:
        An RGB ``PIL.Image`` of at most ``max_side x max_side`` pixels.

    Raises:
        QueryImageError: empty, too large, a format outside ``ALLOWED_FORMATS``, too many
            pixels, truncated or corrupt; the message names the image and what to do.
    """
    data, name = _read(source, name, max_bytes)
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        kind = _sniff(data)
        if kind in ALLOWED_FORMATS:  # the right signature, then nothing usable: cut short or damaged
            raise QueryImageError(f"{name} is not a readable image: the {kind} file is truncated or corrupt; "
                                  f"{_HINT}") from None
        if kind:
            raise QueryImageError(f"{name} is not a readable image here: it is a {kind} file, which is "
                                  f"not accepted; {_HINT}") from None
        raise QueryImageError(f"{name} is not a readable image (not a JPEG, PNG or WebP file); {_HINT}") from None
    with image:
        if image.format not in _ACCEPTED:  # defence in depth: Image.open was told the formats already
            raise QueryImageError(f"{name} is a {image.format} file, which is not accepted; {_HINT}")
        width, height = image.size
        limit = max_pixels if image.format in _DRAFT_FORMATS else max_full_decode_pixels
        if width * height > limit:
            raise QueryImageError(f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} Mpx); "
                                  f"{image.format} images may have at most {limit / 1e6:.0f} Mpx: "
                                  "send a smaller photo")
        try:
            if image.format in _DRAFT_FORMATS:
                image.draft("RGB", (max_side, max_side))  # decode at 1/2..1/8 scale in libjpeg: less memory, faster
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no full-size copy when nothing turns
            rgb = _to_rgb(_shrink(image, max_side))  # shrink first: every later copy is small
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, MemoryError):
            raise QueryImageError(f"{name} is not a readable image: the {image.format} file is truncated or "
                                  f"corrupt; {_HINT}") from None
    return rgb


def _read(source, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    """The bytes of ``source`` (bounded by ``max_bytes``) and the name messages use."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "the upload"
    else:
        path = Path(source)
        name = name or str(path)
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
