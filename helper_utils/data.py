"""The clothing photos as a dataset: each split loaded like an ImageFolder, decoded once and cached.

Typical use in a notebook::

    from helper_utils import ClothingDataset, fetch, make_loader

    fetch()                                  # once; a no-op when the data is already there
    train_set = ClothingDataset("train")     # 2482 photos of 7 classes, 64x64 RGB
    train_loader = make_loader(train_set, batch_size=64, shuffle=True, seed=0)

From a terminal, in the kit's folder (``make data`` runs the first line; ``make data
ARCHIVE=PATH`` adds ``--archive PATH``)::

    .venv/bin/python -m helper_utils.data fetch [--archive PATH] [--root DIR]
    .venv/bin/python -m helper_utils.data cache [--classes seven|all] [--image-size 64]

Fetching (download, verification, atomic extraction) is :mod:`helper_utils.archive`'s job.
Where things live: ``data_root()`` is ``<repo>/data`` unless ``$FASHION_KIT_DATA`` says
otherwise; the photos go to ``data_root()/clothing-dataset-small`` and the decoded-image
caches to ``data_root()/cache``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from helper_utils import paths
from helper_utils.archive import (CLASSES_10, DATASET_FOLDER, IMG_EXTENSIONS, SHARED_ARCHIVE_NAME, SPLITS, URL,
                                  FetchError, dataset_dir, fetch)
from helper_utils.cli import ArgumentParser, int_at_least, run
from helper_utils.files import atomic_path, shown_path
from helper_utils.images import decode_image, resize_for_model
from helper_utils.progress import tqdm

__all__ = [
    "CLASSES_7",
    "CLASSES_10",
    "SPLITS",
    "DATASET_FOLDER",
    "DatasetNotFoundError",
    "data_root",
    "dataset_dir",
    "ClothingDataset",
    "main",
]

CLASSES_7 = ["dress", "hat", "longsleeve", "pants", "shoes", "shorts", "t-shirt"]  # the course's classes

_CACHE_VERSION = 1  # bump when the cached arrays change meaning (e.g. a new resize method)

FETCH_HINT = "run `make data` in the kit's folder, or `helper_utils.fetch()` in a notebook"


class DatasetNotFoundError(FileNotFoundError):
    """A split of the dataset is not on disk; the message says how to fetch it."""


def data_root() -> Path:
    """The folder holding the dataset and its caches.

    Returns:
        ``$FASHION_KIT_DATA`` when set, else the repository's ``data/`` folder (found from this
        file, so the answer is the same from any working directory).
    """
    return paths.data_root()


# ---------------------------------------------------------------------------------------------
# ClothingDataset: one split, decoded once, kept in memory (and on disk) as a uint8 array
# ---------------------------------------------------------------------------------------------

class ClothingDataset(Dataset):
    """The photos of one split, resized once and kept in memory; works like torchvision's ImageFolder.

    It reads the folders that ``fetch`` writes::

        <root>/clothing-dataset-small/train/dress/0a2b...jpg
                                            /dress/0b7c...jpg
                                            /hat/1c3d...jpg
                                      /validation/...
                                      /test/...

    that is ``root/split/class_x/xxx.jpg``. Every photo is decoded once by
    :func:`helper_utils.images.decode_image` (the decoder queries go through too: EXIF
    orientation, 16-bit grey scaled, transparency on white), then resized to
    ``image_size x image_size`` (bilinear with antialiasing). The result is one
    uint8 array, saved under ``<root>/cache/`` so the next run loads it in a fraction of a
    second. A file that cannot be read is skipped with a warning naming it.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        classes: ``"seven"`` (the course's classes), ``"all"`` / ``"ten"``, or a list of names.
        transform: applied to each PIL image in ``__getitem__`` (e.g. ``val_transform``).
        root: the data root; ``None`` means ``data_root()``.
        image_size: side of the square images in pixels.
        cache: read and write the decoded images under ``<root>/cache/``.

    Attributes:
        classes (list[str]): class names, sorted.
        class_to_idx (dict[str, int]): class name -> label.
        samples (list[tuple[str, int]]): (path, label) of every photo kept.
        targets (list[int]): the label of every photo, in order (no decoding needed).
        root (str): the split folder, as in ImageFolder.
        images (np.ndarray): all photos, uint8, shape (N, image_size, image_size, 3).
        skipped (list[str]): paths of the files that could not be read.

    Raises:
        DatasetNotFoundError: the split folder, or a class folder in it, is missing.
        ValueError: ``split``, ``classes`` or ``image_size`` is not an allowed value.
    """

    def __init__(
        self,
        split: str = "train",
        classes: str | Sequence[str] = "seven",
        transform: Callable | None = None,
        root: str | Path | None = None,
        image_size: int = 64,
        cache: bool = True,
    ) -> None:
        self.split = _check_split(split)
        self.classes = _resolve_classes(classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.image_size = _check_image_size(image_size)
        self.transform = transform
        split_dir = _split_dir(root, self.split, self.classes)
        self.root = str(split_dir)
        found = _find_images(split_dir, self.class_to_idx)
        cache_file = _cache_file(root, self.split, self.classes, self.image_size, found) if cache else None
        self.images, kept, bad = _load_images(found, self.image_size, cache_file)
        self.samples = [found[i] for i in kept]
        self.targets = [label for _, label in self.samples]
        self.skipped = [path for path, _ in bad]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        """Returns ``(image, label)``: a PIL RGB image (or ``transform(image)``) and an int."""
        image = Image.fromarray(self.images[index])  # cheap: no file access, no decoding
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    @property
    def imgs(self) -> list[tuple[str, int]]:
        """Same as ``samples`` (ImageFolder keeps this older name too)."""
        return self.samples

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All photos at once, for fast batched training on the GPU.

        Returns:
            images: uint8 tensor (N, 3, S, S), channels first like ``ToTensor`` (not scaled).
            targets: int64 tensor (N,).
        """
        images = torch.from_numpy(self.images).permute(0, 3, 1, 2).contiguous()  # (N,S,S,3) -> (N,3,S,S)
        return images, torch.tensor(self.targets, dtype=torch.long)

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {self.split}",
                 f"    Classes: {self.classes}", f"    Image size: {self.image_size}x{self.image_size}"]
        if self.skipped:
            lines.append(f"    Skipped (unreadable): {len(self.skipped)}")
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}".replace("\n", "\n    "))
        return "\n".join(lines)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


def _resolve_classes(classes: str | Sequence[str]) -> list[str]:
    """``"seven"`` -> CLASSES_7, ``"all"``/``"ten"`` -> CLASSES_10, a list -> itself, sorted."""
    named = {"seven": CLASSES_7, "all": CLASSES_10, "ten": CLASSES_10}
    if isinstance(classes, str):
        if classes not in named:
            raise ValueError(f"classes must be one of {sorted(named)} or a list of names from "
                             f"{CLASSES_10}, got {classes!r}")
        return list(named[classes])
    names = list(classes)
    unknown = [name for name in names if name not in CLASSES_10]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct names from {CLASSES_10}, got {names!r}")
    return sorted(names)


def _check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (e.g. 64), got {image_size!r}")
    return image_size


def _split_dir(root: str | Path | None, split: str, classes: Sequence[str]) -> Path:
    """The folder of one split; raises DatasetNotFoundError with the fix when it is missing."""
    split_dir = dataset_dir(root) / split
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"The {split!r} split is not at {split_dir}.\n  To get it, {FETCH_HINT}.")
    missing = [name for name in classes if not (split_dir / name).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"{split_dir} has no folder for {missing}.\n"
            f"  The data looks incomplete: delete {split_dir.parent} and fetch again ({FETCH_HINT})."
        )
    return split_dir


def _find_images(split_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) of every image file, ordered exactly as ImageFolder orders them.

    Folders are walked as ImageFolder walks them, links to folders included, with three
    exceptions, each skipped with a one-line warning that names it: a link that leads out of
    the dataset folder, a link to a folder already walked or to one of its own parents (a loop,
    which would never end), and a name that is not valid UTF-8 or holds control characters
    (it could not be shown, cached or served as a catalog id).
    """
    dataset_folder = os.path.realpath(split_dir.parent)
    samples = []
    for name, label in sorted(class_to_idx.items(), key=lambda kv: kv[1]):
        for folder, _, files in sorted(_walk(split_dir / name, dataset_folder)):
            for file in sorted(files):
                path = os.path.join(folder, file)
                if file.lower().endswith(IMG_EXTENSIONS) and _usable(path, file, dataset_folder):
                    samples.append((path, label))
    return samples


def _walk(top: Path, dataset_folder: str):
    """``os.walk(top, followlinks=True)`` that never leaves ``dataset_folder`` and never walks a folder twice."""
    seen = {os.path.realpath(top)}
    if not _inside(next(iter(seen)), dataset_folder):
        _skip(top, "a link to a folder outside the dataset folder")
        return
    for folder, dirs, files in os.walk(top, followlinks=True):
        here, kept = os.path.realpath(folder), []
        for d in dirs:
            path = os.path.join(folder, d)
            real = os.path.realpath(path)
            if not _inside(real, dataset_folder):
                _skip(path, "a link to a folder outside the dataset folder")
            elif real in seen or _inside(here, real):
                _skip(path, "a link back to a folder already searched (a loop)")
            elif _bad_name(d):
                _skip(path, _bad_name(d))
            else:
                seen.add(real)
                kept.append(d)
        dirs[:] = kept  # os.walk descends only into these
        yield folder, dirs, files


def _usable(path: str, file: str, dataset_folder: str) -> bool:
    problem = _bad_name(file)
    if not problem and os.path.islink(path) and not _inside(os.path.realpath(path), dataset_folder):
        problem = "a link to a file outside the dataset folder"
    if problem:
        _skip(path, problem)
    return not problem


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _bad_name(name: str) -> str:
    """Why a file name cannot be used (empty when it can)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogates
        return "its name is not valid UTF-8 (rename the file)"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        return "its name holds control characters (rename the file)"
    return ""


def _skip(path: str | Path, why: str) -> None:
    warnings.warn(f"skipped {shown_path(path)}: {why}", stacklevel=4)


def _decode(path: str, size: int) -> np.ndarray:
    """Read one image as RGB, resized to (size, size): uint8 array (size, size, 3).

    Decoded by :func:`helper_utils.images.decode_image`, the decoder queries go through too, so a
    photo gives the same pixels in the catalog and as a query.
    """
    return resize_for_model(decode_image(path), size)


def _load_images(found: list[tuple[str, int]], size: int, cache_file: Path | None):
    """Images of ``found`` from the cache, else decoded (and cached). Returns (images, kept, bad)."""
    cached = _read_cache(cache_file, len(found), size) if cache_file else None
    if cached is not None:
        images, kept, bad = cached
    else:
        images, kept, bad = _decode_all(found, size)
        if cache_file:
            _write_cache(cache_file, images, kept, bad)
    for path, reason in bad:
        warnings.warn(f"skipped unreadable image {shown_path(path)}: {reason}", stacklevel=3)
    return images, kept, bad


def _decode_all(found: list[tuple[str, int]], size: int):
    images = np.empty((len(found), size, size, 3), dtype=np.uint8)  # (N, S, S, 3)
    ok = np.ones(len(found), dtype=bool)
    bad = []
    for i, (path, _) in enumerate(tqdm(found, desc="decode", unit="img", disable=len(found) < 100)):
        try:
            images[i] = _decode(path, size)
        except Exception as err:  # truncated, corrupt, not an image: report it, never crash
            ok[i] = False
            bad.append((path, f"{type(err).__name__}: {err}"))
    kept = np.flatnonzero(ok)
    return (images if ok.all() else images[kept]), kept.tolist(), bad


def _cache_file(root, split: str, classes: list[str], size: int, found: list[tuple[str, int]]) -> Path:
    """The cache path: names the split, classes and size, plus a fingerprint of every file."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}|{classes}|{size}|bilinear".encode())
    split_dir = dataset_dir(root) / split
    for path, label in found:
        stat = os.stat(path)  # a renamed, added, removed or re-written file changes the key
        name = os.fsencode(os.path.relpath(path, split_dir))  # bytes: any name the file system allows
        digest.update(name + f"|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    tag = {tuple(CLASSES_7): "seven", tuple(CLASSES_10): "ten"}.get(tuple(classes))
    tag = tag or "custom" + hashlib.sha256(",".join(classes).encode()).hexdigest()[:8]
    cache_dir = (Path(root).expanduser().resolve() if root else data_root()) / "cache"
    return cache_dir / f"{split}-{tag}-{size}px-{digest.hexdigest()[:16]}.npz"


def _read_cache(cache_file: Path, n_found: int, size: int):
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as saved:
            images, kept = saved["images"], saved["kept"].tolist()
            bad = list(zip(saved["bad_paths"].tolist(), saved["bad_reasons"].tolist()))
        if images.shape != (len(kept), size, size, 3) or len(kept) + len(bad) != n_found:
            raise ValueError(f"unexpected shape {images.shape}")
        return images, kept, bad
    except Exception as err:  # a damaged cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache {cache_file} ({err}); decoding the images again",
                      stacklevel=4)
        return None


def _write_cache(cache_file: Path, images: np.ndarray, kept: list[int], bad: list[tuple[str, str]]) -> None:
    """Save to a temporary file, then rename: readers never see half a cache."""
    try:
        with atomic_path(cache_file, mode=0o644) as tmp, open(tmp, "wb") as f:  # as readable as the data
            np.savez(f, images=images, kept=np.asarray(kept, dtype=np.int64),
                     bad_paths=np.asarray([p for p, _ in bad], dtype=str),
                     bad_reasons=np.asarray([r for _, r in bad], dtype=str))
        prefix = cache_file.name.rsplit("-", 1)[0] + "-"
        for old in cache_file.parent.glob(prefix + "*.npz"):  # caches of an older version of the folder
            if old != cache_file:
                old.unlink(missing_ok=True)
    except OSError as err:  # read-only or full disk: keep going without a cache
        warnings.warn(f"could not write the image cache {cache_file} ({err}); continuing without it",
                      stacklevel=4)


# ---------------------------------------------------------------------------------------------
# Command line: python -m helper_utils.data fetch | cache
# ---------------------------------------------------------------------------------------------

def _build_caches(classes: str, image_size: int, root: Path | None) -> None:
    """Decode every split once so later runs load from the cache."""
    for split in SPLITS:
        start = time.perf_counter()
        dataset = ClothingDataset(split, classes=classes, root=root, image_size=image_size)
        print(f"{split}: {len(dataset)} images of {len(dataset.classes)} classes at "
              f"{image_size}x{image_size} ready in {time.perf_counter() - start:.1f} s", flush=True)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m helper_utils.data",
                            description="Fetch the clothing dataset and build its caches.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download or unpack the verified dataset (no-op if present)")
    fetch_cmd.add_argument("--archive", type=Path, help=f"a local copy of the archive ({SHARED_ARCHIVE_NAME})")
    fetch_cmd.add_argument("--root", type=Path, help="data root (default: $FASHION_KIT_DATA or <repo>/data)")
    fetch_cmd.add_argument("--url", default=URL, help="where to download from when there is no local copy")
    fetch_cmd.add_argument("--quiet", action="store_true", help="print errors only")
    cache_cmd = commands.add_parser("cache", help="decode every split once and write the image caches")
    cache_cmd.add_argument("--classes", default="seven", choices=["seven", "all"])
    cache_cmd.add_argument("--image-size", type=int_at_least(1), default=64)
    cache_cmd.add_argument("--root", type=Path, help="data root (default: $FASHION_KIT_DATA or <repo>/data)")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on bad input or failure, 130 on Ctrl-C)."""
    args = _parser().parse_args(argv)

    def work() -> None:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning  # a skipped file is one line, as errors are
            if args.command == "fetch":
                fetch(args.archive, args.root, url=args.url, quiet=args.quiet)
            else:
                _build_caches(args.classes, args.image_size, args.root)

    return run(work, errors=(FetchError,),
               interrupted="interrupted: nothing half-written was left; run the command again")


if __name__ == "__main__":
    sys.exit(main())
