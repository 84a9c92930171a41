"""The one place that knows where the kit's folders are.

Every path is found from this file, so the answers are the same from any working directory
(notebooks run from ``notebooks/`` and from ``notebooks/solutions/`` alike). Each folder a
learner may want elsewhere has an environment variable that overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO", "NOTEBOOKS", "SOLUTIONS", "DATA_ENV", "CHECKPOINT_ENV", "ARCHIVE_ENV",
           "data_root", "checkpoint_dir", "artifacts_dir", "shared_archive_candidates"]

REPO = Path(__file__).resolve().parents[1]  # the repository root (helper_utils/ sits in it)
NOTEBOOKS = REPO / "notebooks"  # learner notebooks, generated
SOLUTIONS = NOTEBOOKS / "solutions"  # solution notebooks, the source

DATA_ENV = "FASHION_KIT_DATA"  # where the photos and their caches go; default <repo>/data
CHECKPOINT_ENV = "FASHION_KIT_CHECKPOINTS"  # where trained weights go; default <repo>/checkpoints
ARCHIVE_ENV = "FASHION_KIT_ARCHIVE"  # a local copy of the dataset archive to use instead of downloading


def data_root() -> Path:
    """``$FASHION_KIT_DATA`` when set, else ``<repo>/data``: the folder holding the dataset and its caches."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser().resolve() if env else REPO / "data"


def checkpoint_dir() -> Path:
    """``$FASHION_KIT_CHECKPOINTS`` when set, else ``<repo>/checkpoints``: where notebooks save trained weights."""
    env = os.environ.get(CHECKPOINT_ENV)
    return Path(env).expanduser() if env else REPO / "checkpoints"


def artifacts_dir() -> Path:
    """``<repo>/artifacts``: generated files that are never committed (executed notebooks, exports, reports)."""
    return REPO / "artifacts"


def shared_archive_candidates(name: str) -> list[Path]:
    """Where a local copy of the dataset archive may sit: ``$FASHION_KIT_ARCHIVE``, else beside the clone."""
    env = os.environ.get(ARCHIVE_ENV)
    if env:
        return [Path(env).expanduser()]
    return [REPO.parent / "shared" / "datasets" / name]
