"""The reference TripletDataset: sampling rules, label map without decoding, seeding, errors."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from helper_utils.triplets import TripletDataset


class CountingDataset:
    """(image, label) pairs; image i is a (1, 2, 2) tensor filled with i. Counts every __getitem__."""

    def __init__(self, labels, with_targets=True, classes=None):
        self._labels = list(labels)
        if with_targets:
            self.targets = list(labels)
        self.classes = classes if classes is not None else [f"c{k}" for k in sorted(set(labels))]
        self.loads = 0

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        self.loads += 1
        return torch.full((1, 2, 2), float(i)), self._labels[i]


def _index(image: torch.Tensor) -> int:
    return int(image.flatten()[0])


LABELS = [1, 0, 2, 0, 1, 1, 2, 0, 2, 2]  # three classes of 3, 3 and 4 items, interleaved


def _indices(triplets, i):
    return tuple(_index(x) for x in triplets[i])


def test_len_and_attributes():
    data = CountingDataset(LABELS)
    triplets = TripletDataset(data)
    assert len(triplets) == len(data) == 10
    assert triplets.dataset is data
    assert triplets.classes == data.classes
    assert triplets.labels == LABELS
    assert triplets.label_to_indices == {0: [1, 3, 7], 1: [0, 4, 5], 2: [2, 6, 8, 9]}


def test_label_map_comes_from_targets_without_loading_images():
    data = CountingDataset(LABELS)
    TripletDataset(data)
    assert data.loads == 0


def test_without_targets_labels_are_read_once_each():
    data = CountingDataset(LABELS, with_targets=False)
    triplets = TripletDataset(data)
    assert data.loads == len(data)
    assert triplets.label_to_indices[2] == [2, 6, 8, 9]


def test_every_triplet_follows_the_rules():
    data = CountingDataset(LABELS)
    triplets = TripletDataset(data)
    random.seed(0)
    for _ in range(30):
        for i in range(len(data)):
            a, p, n = _indices(triplets, i)
            assert a == i
            assert LABELS[p] == LABELS[i] and p != i
            assert LABELS[n] != LABELS[i]


def test_getitem_loads_only_the_three_images():
    data = CountingDataset(LABELS)
    triplets = TripletDataset(data)
    for i in range(len(data)):
        triplets[i]
    assert data.loads == 3 * len(data)


def test_positives_and_negatives_cover_their_choices():
    data = CountingDataset(LABELS)
    triplets = TripletDataset(data, seed=0)
    positives, negative_classes = Counter(), {label: Counter() for label in set(LABELS)}
    for epoch in range(200):
        triplets.set_epoch(epoch)
        a, p, n = _indices(triplets, 2)  # class 2 has members 2, 6, 8, 9
        positives[p] += 1
        negative_classes[LABELS[a]][LABELS[n]] += 1
    assert set(positives) == {6, 8, 9}
    assert set(negative_classes[2]) == {0, 1}
    # negative class is uniform over the other classes: both near 100 of 200
    assert all(60 < c < 140 for c in negative_classes[2].values())


def test_a_single_item_class_is_its_own_positive():
    labels = [0, 1, 1, 2]
    triplets = TripletDataset(CountingDataset(labels), seed=1)
    for epoch in range(10):
        triplets.set_epoch(epoch)
        a, p, n = _indices(triplets, 0)
        assert a == p == 0 and labels[n] != 0


def test_seeded_triplets_are_reproducible():
    data = CountingDataset(LABELS)
    first = [_indices(TripletDataset(data, seed=7), i) for i in range(len(data))]
    again = TripletDataset(data, seed=7)
    assert [_indices(again, i) for i in range(len(data))] == first
    assert [_indices(again, i) for i in range(len(data))] == first  # same on every call
    other_seed = [_indices(TripletDataset(data, seed=8), i) for i in range(len(data))]
    assert other_seed != first
    again.set_epoch(1)
    assert [_indices(again, i) for i in range(len(data))] != first


def test_unseeded_sampling_follows_pythons_random():
    data = CountingDataset(LABELS)
    triplets = TripletDataset(data)
    random.seed(3)
    first = [_indices(triplets, i) for i in range(len(data))]
    random.seed(3)
    assert [_indices(triplets, i) for i in range(len(data))] == first
    draws = {_indices(triplets, 0) for _ in range(50)}
    assert len(draws) > 1  # not frozen without a seed


def test_fewer_than_two_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="1 class"):
        TripletDataset(CountingDataset([3, 3, 3]))
    with pytest.raises(ValueError, match="0 class"):
        TripletDataset(CountingDataset([]))


def test_index_out_of_range():
    triplets = TripletDataset(CountingDataset(LABELS))
    with pytest.raises(IndexError):
        triplets[10]
    assert _indices(triplets, -1)[0] == 9


def test_wraps_an_imagefolder_and_a_subset(make_imagefolder):
    root = make_imagefolder(per_class=2, splits=("train",))
    folder = ImageFolder(next(root.glob("*/train")), transform=T.Compose([T.Resize((8, 8)), T.ToTensor()]))
    triplets = TripletDataset(folder, seed=0)
    assert len(triplets) == len(folder) and triplets.classes == folder.classes
    a, p, n = triplets[0]
    assert a.shape == p.shape == n.shape == (3, 8, 8)

    subset = Subset(folder, [0, 1, 4, 5])  # two images of classes 0 and 2
    sub_triplets = TripletDataset(subset)
    assert sub_triplets.labels == [folder.targets[i] for i in [0, 1, 4, 5]]


def test_batches_through_a_dataloader():
    triplets = TripletDataset(CountingDataset(LABELS), seed=0)
    anchors, positives, negatives = next(iter(DataLoader(triplets, batch_size=4)))
    assert anchors.shape == positives.shape == negatives.shape == (4, 1, 2, 2)
    assert [_index(x) for x in anchors] == [0, 1, 2, 3]
