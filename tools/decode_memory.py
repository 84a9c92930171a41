"""How much memory and time one decode slot of the service needs: the worst images the limits let through.

Every case is an image at (or just under) a limit of :mod:`helper_utils.images`: a 40 Mpx
single-scan JPEG and a 65500x600 strip, progressive JPEGs at the coefficient-memory limit in each
chroma sampling, PNGs and a WebP at the full-decode pixel limit in the modes that convert (RGBA,
16-bit grey, palette with transparency, an EXIF-rotated one), plus a scan bomb and a photo. Each is
decoded in a fresh decode worker (:class:`~helper_utils.going_further.decoding.DecodeWorker`, the
process the service decodes in) and the worker reports its peak resident memory during that decode.
The report gives the worker's size at rest and the most any decode added to it: what one decode
slot costs, for the results page::

    python -m tools.decode_memory [--json artifacts/decode_memory.json] [--quick]

``--quick`` runs every case at a quarter of its size (a few seconds; the tests use it).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from helper_utils.cli import ArgumentParser, run
from helper_utils.files import atomic_path
from helper_utils.going_further.decoding import DecodeWorker
from helper_utils.images import (MAX_FULL_DECODE_PIXELS, MAX_JPEG_COEFFICIENT_BYTES, MAX_PIXELS, MAX_WEBP_PIXELS,
                                 QueryImageError, jpeg_layout)

__all__ = ["CASES", "measure", "main"]

COMMAND = "python -m tools.decode_memory"


def _noise(width: int, height: int, mode: str = "RGB", seed: int = 0, grid: int = 64) -> Image.Image:
    """A photo-like image: smooth colour fields (upscaled noise) that compress to under the upload limit."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}[mode]
    small = rng.integers(0, 256, size=(grid * 3 // 4, grid, channels), dtype=np.uint8)
    small = Image.fromarray(small[..., 0] if channels == 1 else small, mode)
    return small.resize((width, height), Image.BILINEAR)


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        kwargs.setdefault("bufsize", image.width * image.height * 4)  # libjpeg cannot suspend a progressive save
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _side_for(pixels: float, aspect: float = 4 / 3) -> tuple[int, int]:
    """(width, height) of about ``pixels`` pixels at ``aspect``, both multiples of 16."""
    height = int(math.sqrt(pixels / aspect)) // 16 * 16
    return int(height * aspect) // 16 * 16, height


def _progressive_at_limit(subsampling: int, mode: str = "RGB", scale: float = 1.0) -> bytes:
    """A progressive JPEG whose coefficient memory is just under the limit, at this chroma sampling."""
    per_pixel = {0: 6, 2: 3}.get(subsampling, 6) if mode == "RGB" else 8  # 2 bytes x samples per pixel
    width, height = _side_for(0.98 * scale * MAX_JPEG_COEFFICIENT_BYTES / per_pixel)
    data = _save(_noise(width, height, mode), "JPEG", progressive=True, quality=90, subsampling=subsampling)
    assert jpeg_layout(data).coefficient_bytes <= MAX_JPEG_COEFFICIENT_BYTES
    return data


def _rotated_png(width: int, height: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_noise(width, height, "RGBA", grid=8), "PNG", exif=exif.tobytes())


def _palette_png(width: int, height: int) -> bytes:
    image = _noise(width, height, "L").point(lambda v: v // 16).convert("P")
    image.putpalette([c for i in range(16) for c in (i * 16, 255 - i * 16, 90)])
    return _save(image, "PNG", transparency=0)


def _scan_bomb(scans: int = 2000) -> bytes:
    """A progressive JPEG whose last scan is repeated ``scans`` times (libjpeg decodes every copy)."""
    data = _save(_noise(128, 128), "JPEG", progressive=True, quality=90)
    last_sos = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last_sos:end] * scans + data[end:]


def _full(scale: float, limit: int = MAX_FULL_DECODE_PIXELS) -> tuple[int, int]:
    return _side_for(0.99 * scale * limit, 1.0)


CASES: dict[str, Callable[[float], bytes]] = {  # name -> make(scale), scale 1.0 = at the limit
    "photo, 533x400 JPEG": lambda s: _save(_noise(533, 400), "JPEG", quality=90),
    "single-scan JPEG at the pixel limit": lambda s: _save(_noise(*_side_for(0.99 * s * MAX_PIXELS)), "JPEG", quality=90),
    "single-scan JPEG strip, 65500 wide": lambda s: _save(_noise(65500 if s >= 1 else 16375, 600), "JPEG", quality=90),
    "progressive JPEG 4:2:0 at the coefficient limit": lambda s: _progressive_at_limit(2, scale=s),
    "progressive JPEG 4:4:4 at the coefficient limit": lambda s: _progressive_at_limit(0, scale=s),
    "progressive CMYK JPEG at the coefficient limit": lambda s: _progressive_at_limit(0, "CMYK", scale=s),
    "RGBA PNG at the full-decode limit": lambda s: _save(_noise(*_full(s), "RGBA", grid=8), "PNG"),
    "16-bit grey PNG at the full-decode limit": lambda s: _save(
        Image.fromarray(np.asarray(_noise(*_full(s), "L"), dtype=np.uint16) * 257), "PNG"),
    "palette PNG with transparency at the full-decode limit": lambda s: _palette_png(*_full(s)),
    "EXIF-rotated RGBA PNG at the full-decode limit": lambda s: _rotated_png(*_full(s)),
    "RGBA WebP at the WebP limit": lambda s: _save(_noise(*_full(s, MAX_WEBP_PIXELS), "RGBA"), "WEBP", quality=90),
    "scan bomb (2000 scans, refused unread)": lambda s: _scan_bomb(),
}


def measure(cases: Sequence[str] | None = None, scale: float = 1.0, log: Callable[[str], None] = print) -> dict:
    """Decode each case in a fresh worker; returns the worker's size at rest and each decode's cost."""
    rows = []
    for name in cases or CASES:
        data = CASES[name](scale)
        worker = DecodeWorker()
        try:
            worker.decode(_save(_noise(8, 8), "PNG"))  # warm: imports and first allocations done
            rest_kib = worker.decode(_save(_noise(8, 8), "PNG")).peak_rss_kib
            start = time.monotonic()
            try:
                result = worker.decode(data, time_limit_s=120)
                outcome, peak = "decoded", result.peak_rss_kib
            except QueryImageError as error:
                outcome, peak = f"refused: {str(error)[:80]}", rest_kib
            seconds = time.monotonic() - start
        finally:
            worker.kill()
        row = {"case": name, "bytes": len(data), "outcome": outcome, "rest_mib": rest_kib / 1024,
               "peak_mib": peak / 1024, "added_mib": max(0, peak - rest_kib) / 1024, "seconds": seconds}
        rows.append(row)
        log(f"{name:<56} {len(data) / 2**20:6.1f} MB  +{row['added_mib']:6.1f} MiB  {seconds:5.2f} s  {outcome[:40]}")
    return {"scale": scale, "rows": rows, "rest_mib": max(r["rest_mib"] for r in rows),
            "most_added_mib": max(r["added_mib"] for r in rows)}


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="every case at a quarter of its size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    report = measure(scale=0.25 if args.quick else 1.0)
    print(f"decode worker at rest: {report['rest_mib']:.0f} MiB; the most one decode added: "
          f"{report['most_added_mib']:.0f} MiB")
    if args.json:
        with atomic_path(args.json, mode=0o644) as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
