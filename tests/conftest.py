"""Shared fixtures: tiny synthetic clothing datasets, and a data root isolated from the real one.

The synthetic data has the layout ``fetch`` writes, so ``ClothingDataset(split, root=root)``
and ``torchvision.datasets.ImageFolder(root / "clothing-dataset-small" / split)`` both read it::

    <root>/clothing-dataset-small/<split>/<class>/<class>_<i>.jpg

Each class has its own base colour (plus a little seeded noise), so a model can learn it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from helper_utils.data import CLASSES_7, DATASET_FOLDER, SPLITS

# The unit tests run tiny tensors, where a second thread only adds synchronisation, and on a
# busy 2-core machine (CI, or a notebook running beside them) spinning threads slow them 10x.
torch.set_num_threads(1)


def make_synthetic_imagefolder(
    root: Path,
    classes: Sequence[str] = CLASSES_7,
    splits: Sequence[str] = SPLITS,
    per_class: int = 3,
    size: tuple[int, int] = (24, 20),
    seed: int = 0,
) -> Path:
    """Write ``per_class`` small JPEGs per split and class under ``root``; returns ``root``.

    Args:
        root: the data root to fill (created if needed).
        classes: class folder names.
        splits: split folder names.
        per_class: images per class and split.
        size: (width, height) of every image, deliberately not square.
        seed: seeds the pixel noise.
    """
    rng = np.random.default_rng(seed)
    for split in splits:
        for label, name in enumerate(classes):
            folder = Path(root) / DATASET_FOLDER / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(37 * label) % 256, (91 * label + 60) % 256, (53 * label + 120) % 256])
            for i in range(per_class):
                noise = rng.integers(-20, 21, size=(size[1], size[0], 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i}.jpg", quality=95)
    return Path(root)


def build_synthetic_service(tmp: Path, per_class: int) -> dict:
    """Seeded untrained checkpoints and a synthetic data root, built into a search-service folder.

    Returns ``dir`` (the service folder), ``image_root``, ``ckpt`` and ``tmp``. Imports the going-further
    stack only when called, so tests that do not build a service never load it.
    """
    from helper_utils.checkpoints import save_checkpoint
    from helper_utils.going_further import serve
    from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier, SiameseEncoder

    torch.manual_seed(0)
    save_checkpoint({"state_dict": SiameseEncoder(MobileNetBackbone()).state_dict()}, tmp / "ckpt" / "encoder_best.pt")
    save_checkpoint({"state_dict": MobileNetLikeClassifier(7).state_dict()}, tmp / "ckpt" / "classifier_best.pt")
    data_root = make_synthetic_imagefolder(tmp / "data", per_class=per_class)
    serve.build(tmp / "svc", tmp / "ckpt", splits=("validation",), data_root=data_root)
    return {"dir": tmp / "svc", "image_root": data_root / DATASET_FOLDER, "ckpt": tmp / "ckpt", "tmp": tmp}


@pytest.fixture
def make_imagefolder(tmp_path):
    """The builder itself, for tests that need other classes, sizes or counts (root defaults to tmp)."""

    def build(root: Path | None = None, **kwargs) -> Path:
        return make_synthetic_imagefolder(root or tmp_path / "data", **kwargs)

    return build


@pytest.fixture
def synthetic_imagefolder(tmp_path) -> Path:
    """A data root with the seven classes x three splits x 3 tiny JPEGs (63 files, ~0.1 s)."""
    return make_synthetic_imagefolder(tmp_path / "data")


@pytest.fixture
def isolated_data_root(tmp_path, monkeypatch) -> Path:
    """Point ``data_root()`` at an empty temp folder and hide every local archive copy."""
    root = tmp_path / "isolated-data"
    monkeypatch.setenv("FASHION_KIT_DATA", str(root))
    monkeypatch.delenv("FASHION_KIT_ARCHIVE", raising=False)
    monkeypatch.setattr("helper_utils.archive._shared_archive", lambda: None)
    return root
