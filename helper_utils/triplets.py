"""Reference ``TripletDataset`` of notebook 04: (anchor, positive, negative) images for triplet training."""

from __future__ import annotations

import random
from typing import Any, Optional, Sequence

from torch.utils.data import Dataset, Subset

__all__ = ["TripletDataset"]


class TripletDataset(Dataset):
    """Wraps a dataset of ``(image, label)`` pairs and serves ``(anchor, positive, negative)`` images.

    Item ``i`` uses image ``i`` of the wrapped dataset as the anchor, a *different* image of
    the same class as the positive, and an image of another class as the negative::

        dataset[i]        -> (image_i, label_i)
        triplets[i]       -> (image_i, image_p, image_n)
                             label_p == label_i, p != i  (p == i only if the class has one image)
                             label_n != label_i          (class drawn uniformly, then an image in it)

    The label -> indices map is built once, from ``dataset.targets`` when the dataset has it
    (``ImageFolder`` does, and so does a ``Subset`` of one), so no image is decoded to build
    it; otherwise each item's label is read once through ``dataset[i]``.

    Sampling: without a seed, positives and negatives come from Python's ``random`` module,
    so ``random.seed`` (or ``helper_utils.device.seed_everything``) makes a run repeatable
    and DataLoader workers get their own streams. With a seed, triplet ``i`` depends only on
    ``(seed, epoch, i)``: the same on every call and in every worker process, and new for
    each epoch set with :meth:`set_epoch`.

    Args:
        dataset: a map-style dataset whose items are ``(image, label)`` with an int label.
        seed: makes every triplet reproducible (see above); ``None`` draws afresh each call.

    Attributes:
        dataset: the wrapped dataset (not a copy).
        classes: the wrapped dataset's ``classes`` (sorted label values when it has none).
        labels: the label of every item, in the wrapped dataset's order.
        label_to_indices: label -> list of the indices of that label, ascending.
        seed: the seed given, or ``None``.
        epoch: the epoch mixed into seeded sampling (0 until :meth:`set_epoch`).

    Raises:
        ValueError: when the dataset has fewer than two classes (no negative exists).
    """

    def __init__(self, dataset: Any, seed: Optional[int] = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.labels = _labels_of(dataset)
        self.label_to_indices: dict[int, list[int]] = {}
        for index, label in enumerate(self.labels):
            self.label_to_indices.setdefault(label, []).append(index)
        if len(self.label_to_indices) < 2:
            raise ValueError(
                f"a triplet needs a negative from another class, but the dataset has "
                f"{len(self.label_to_indices)} class(es) with items: {sorted(self.label_to_indices)}")
        self.classes = getattr(dataset, "classes", sorted(self.label_to_indices))
        self._label_list = sorted(self.label_to_indices)
        self._label_position = {label: pos for pos, label in enumerate(self._label_list)}
        # Where each index sits in its class's list: lets a positive skip the anchor in O(1).
        self._position = {i: pos for members in self.label_to_indices.values() for pos, i in enumerate(members)}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a TripletDataset of {len(self)} items")
        index %= len(self)
        rng = random if self.seed is None else random.Random(f"{self.seed}-{self.epoch}-{index}")
        label = self.labels[index]
        anchor = self.dataset[index][0]
        positive = self.dataset[self._positive_index(index, label, rng)][0]
        negative = self.dataset[self._negative_index(label, rng)][0]
        return anchor, positive, negative

    def set_epoch(self, epoch: int) -> None:
        """Give seeded sampling a new, still reproducible, set of triplets for ``epoch``."""
        self.epoch = int(epoch)

    def _positive_index(self, index: int, label: int, rng) -> int:
        members = self.label_to_indices[label]
        if len(members) == 1:  # nothing else to pair with: the anchor is its own positive
            return index
        pos = rng.randrange(len(members) - 1)
        if pos >= self._position[index]:  # skip the anchor's own slot
            pos += 1
        return members[pos]

    def _negative_index(self, label: int, rng) -> int:
        # Uniform over the other classes first, so rare classes are negatives as often as common ones.
        pos = rng.randrange(len(self._label_list) - 1)
        if pos >= self._label_position[label]:  # skip the anchor's own class
            pos += 1
        return rng.choice(self.label_to_indices[self._label_list[pos]])


def _labels_of(dataset: Any) -> list[int]:
    """Every item's label, from ``targets`` where possible (no image decoding), else via ``dataset[i]``."""
    targets = _targets_of(dataset)
    if targets is not None:
        return targets
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _targets_of(dataset: Any) -> Optional[list[int]]:
    if isinstance(dataset, Subset):
        parent = _targets_of(dataset.dataset)
        return None if parent is None else [parent[int(i)] for i in dataset.indices]
    targets: Optional[Sequence] = getattr(dataset, "targets", None)
    if targets is None or len(targets) != len(dataset):
        return None
    return [int(t) for t in targets]
