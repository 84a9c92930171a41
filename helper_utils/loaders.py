"""Batches for training and evaluation: a seeded ``DataLoader``, and fast loaders over decoded images.

:func:`make_loader` is the plain PyTorch way, one sample at a time through ``__getitem__`` and
the dataset's transform; notebook 01 teaches it. A ``DataLoader`` over an image folder decodes,
resizes and augments every image on every access, one image at a time. The kit decodes each
image once (``ClothingDataset``), and :class:`TensorLoader` then works on whole batches of
uint8 tensors: indexing a batch and augmenting it in one go
(``helper_utils.augment.BatchAugment``) costs a small fraction of the model's own step.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from helper_utils.augment import normalize_batch

__all__ = ["make_loader", "TensorLoader", "ClassBalancedLoader"]


def make_loader(
    dataset: Dataset,
    batch_size: int = 64,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset``; with ``seed`` the shuffling order repeats run after run.

    Args:
        dataset: any map-style dataset, e.g. a ``ClothingDataset``.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (use it for training only).
        num_workers: worker processes; 0 loads in the main process (best for in-memory data).
        seed: seeds the loader's own random generator (shuffling, worker seeds).
        drop_last: drop the last, smaller batch.

    Returns:
        The DataLoader.

    Raises:
        ValueError: ``batch_size`` is not a positive int or ``num_workers`` a negative one.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,  # keep workers alive between epochs
    )


class TensorLoader:
    """Iterate ``(images, targets)`` batches over in-memory uint8 images.

    Args:
        images: uint8 tensor ``(N, 3, H, W)``.
        targets: long tensor ``(N,)``.
        batch_size: images per batch.
        shuffle: a new order every epoch (seeded by ``seed``).
        augment: called on each uint8 batch and must return a normalised float batch;
            ``None`` only normalises (validation).
        drop_last: drop the last, smaller batch (keeps BatchNorm statistics stable).
        seed: seed of the shuffling generator, for repeatable runs.
        channels_last: return batches in channels-last memory order (faster convolutions on CPU).
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 64, shuffle: bool = False,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, drop_last: bool = False,
                 seed: int | None = None, channels_last: bool = True) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images should be a uint8 tensor (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images, self.targets = images, torch.as_tensor(targets, dtype=torch.long)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.channels_last = augment, channels_last
        self.generator = torch.Generator().manual_seed(seed if seed is not None else torch.initial_seed() % 2**63)

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> "TensorLoader":
        """Build from a dataset with ``as_tensors()`` (``ClothingDataset``)."""
        images, targets = dataset.as_tensors()
        return cls(images, targets, **kwargs)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self._prepare(self.images[index]), self.targets[index]

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        batch = self.augment(batch) if self.augment is not None else normalize_batch(batch)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch


class ClassBalancedLoader(TensorLoader):
    """Batches of ``classes_per_batch`` classes x ``samples_per_class`` images (a "P x K" sampler).

    Mining triplets inside a batch (batch-hard, semi-hard) needs every batch to hold several
    images of each of several classes; a plain shuffled batch often holds one hat and no dress.
    One epoch yields ``len(images) // (P * K)`` batches.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes_per_batch: int = 7,
                 samples_per_class: int = 8, augment: Callable | None = None, seed: int | None = None,
                 channels_last: bool = True) -> None:
        super().__init__(images, targets, batch_size=classes_per_batch * samples_per_class, shuffle=True,
                         augment=augment, drop_last=True, seed=seed, channels_last=channels_last)
        self.by_class = [torch.nonzero(self.targets == c).flatten() for c in torch.unique(self.targets)]
        if classes_per_batch > len(self.by_class):
            raise ValueError(f"classes_per_batch={classes_per_batch} but only {len(self.by_class)} classes")
        self.p, self.k = classes_per_batch, samples_per_class

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(len(self)):
            classes = torch.randperm(len(self.by_class), generator=self.generator)[: self.p]
            index = torch.cat([self._draw(self.by_class[c]) for c in classes.tolist()])
            yield self._prepare(self.images[index]), self.targets[index]

    def _draw(self, members: torch.Tensor) -> torch.Tensor:
        """K members of one class; with replacement only when the class has fewer than K."""
        if len(members) >= self.k:
            return members[torch.randperm(len(members), generator=self.generator)[: self.k]]
        return members[torch.randint(len(members), (self.k,), generator=self.generator)]
