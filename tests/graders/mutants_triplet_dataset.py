"""Answers to notebook 04's ``TripletDataset`` exercise: correct alternatives, the stub, and wrong ones.

``CORRECT`` must pass ``unittests.test_triplet_dataset``; ``STUBS`` and every entry of ``MUTANTS``
must fail it. Each mutant maps to ``(class, name of a case that must fail)``.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset


class TutorialTripletDataset(Dataset):
    """The tutorial's answer with labels read from ``targets``: numpy arrays of indices, then random.choice."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.labels = list(dataset.targets)
        self.label_to_indices = {label: np.where(np.array(self.labels) == label)[0]
                                 for label in set(self.labels)}

    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_index = index
        while positive_index == index:
            positive_index = random.choice(self.label_to_indices[anchor_label])
        negative_label = random.choice(list(set(self.labels) - {anchor_label}))
        negative_index = random.choice(self.label_to_indices[negative_label])
        positive_img, _ = self.dataset[positive_index]
        negative_img, _ = self.dataset[negative_index]
        return anchor_img, positive_img, negative_img

    def __len__(self):
        return len(self.dataset)


class TargetsTorchTripletDataset(Dataset):
    """Another correct answer: labels from ``targets``, torch RNG, negatives uniform over other-class images."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.targets = torch.as_tensor(dataset.targets)
        self.labels = self.targets.tolist()
        self.label_to_indices = {int(c): torch.nonzero(self.targets == c).flatten().tolist()
                                 for c in self.targets.unique()}

    def __len__(self):
        return self.targets.numel()

    def __getitem__(self, index):
        label = self.targets[index]
        same = torch.nonzero((self.targets == label) & (torch.arange(len(self)) != index)).flatten()
        other = torch.nonzero(self.targets != label).flatten()
        p = same[torch.randint(len(same), ())]
        n = other[torch.randint(len(other), ())]
        return self.dataset[index][0], self.dataset[p][0], self.dataset[n][0]


CORRECT = {
    "tutorial (iterates in __init__, random.choice)": TutorialTripletDataset,
    "targets + torch RNG": TargetsTorchTripletDataset,
}


# --------------------------------------------------------------------------- stubs


class StubTripletDataset(Dataset):
    """The learner copy before any code: every placeholder left as None."""

    def __init__(self, dataset):
        self.dataset = None
        self.labels = None
        self.label_to_indices = None

    def __getitem__(self, index):
        anchor_img, anchor_label = None, None
        positive_img = None
        negative_img = None
        return anchor_img, positive_img, negative_img

    def __len__(self):
        return None


class HalfStubTripletDataset(TutorialTripletDataset):
    """__init__ written, __getitem__ still returning the None placeholders."""

    def __getitem__(self, index):
        return None, None, None


STUBS = {"None placeholder": None, "stub class": StubTripletDataset, "half stub": HalfStubTripletDataset}


# --------------------------------------------------------------------------- wrong answers


class PositiveFromAnotherClass(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_label = random.choice(list(set(self.labels) - {anchor_label}))  # bug: should be anchor_label
        positive_index = random.choice(self.label_to_indices[positive_label])
        negative_label = random.choice(list(set(self.labels) - {anchor_label}))
        negative_index = random.choice(self.label_to_indices[negative_label])
        return anchor_img, self.dataset[positive_index][0], self.dataset[negative_index][0]


class NegativeFromAnchorClass(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_index = index
        while positive_index == index:
            positive_index = random.choice(self.label_to_indices[anchor_label])
        negative_index = random.choice(self.label_to_indices[anchor_label])  # bug: the anchor's own class
        return anchor_img, self.dataset[positive_index][0], self.dataset[negative_index][0]


class NegativeAnyIndex(TutorialTripletDataset):
    """Negative drawn from the whole dataset without checking its label."""

    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_index = index
        while positive_index == index:
            positive_index = random.choice(self.label_to_indices[anchor_label])
        negative_index = random.randrange(len(self.dataset))
        return anchor_img, self.dataset[positive_index][0], self.dataset[negative_index][0]


class PositiveIsAnchor(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        negative_label = random.choice(list(set(self.labels) - {anchor_label}))
        negative_index = random.choice(self.label_to_indices[negative_label])
        return anchor_img, anchor_img, self.dataset[negative_index][0]


class PositiveMayBeAnchor(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_index = random.choice(self.label_to_indices[anchor_label])  # bug: no "while == index"
        negative_label = random.choice(list(set(self.labels) - {anchor_label}))
        negative_index = random.choice(self.label_to_indices[negative_label])
        return anchor_img, self.dataset[positive_index][0], self.dataset[negative_index][0]


class AlwaysFirstPositive(TutorialTripletDataset):
    """Positive is always the first other image of the class: no randomness."""

    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_index = [i for i in self.label_to_indices[anchor_label] if i != index][0]
        negative_label = random.choice(list(set(self.labels) - {anchor_label}))
        negative_index = random.choice(self.label_to_indices[negative_label])
        return anchor_img, self.dataset[positive_index][0], self.dataset[negative_index][0]


class NegativeAlwaysNextClass(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_index = index
        while positive_index == index:
            positive_index = random.choice(self.label_to_indices[anchor_label])
        negative_label = (anchor_label + 1) % len(self.label_to_indices)  # bug: one fixed class
        negative_index = random.choice(self.label_to_indices[negative_label])
        return anchor_img, self.dataset[positive_index][0], self.dataset[negative_index][0]


class LenIsNumberOfClasses(TutorialTripletDataset):
    def __len__(self):
        return len(self.label_to_indices)


class LenTimesThree(TutorialTripletDataset):
    def __len__(self):
        return 3 * len(self.dataset)


class ReturnsLabelsToo(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor, positive, negative = super().__getitem__(index)
        return anchor, positive, negative, self.labels[index]


class ReturnsPairs(TutorialTripletDataset):
    """Returns the (image, label) pairs instead of images."""

    def __getitem__(self, index):
        anchor_label = self.labels[index]
        positive_index = index
        while positive_index == index:
            positive_index = random.choice(self.label_to_indices[anchor_label])
        negative_label = random.choice(list(set(self.labels) - {anchor_label}))
        negative_index = random.choice(self.label_to_indices[negative_label])
        return self.dataset[index], self.dataset[positive_index], self.dataset[negative_index]


class ReturnsIndices(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor_label = self.labels[index]
        positive_index = index
        while positive_index == index:
            positive_index = int(random.choice(self.label_to_indices[anchor_label]))
        negative_label = random.choice(list(set(self.labels) - {anchor_label}))
        return index, positive_index, int(random.choice(self.label_to_indices[negative_label]))


class AnchorFromShuffledIndex(TutorialTripletDataset):
    """Ignores the index: a random anchor each call."""

    def __getitem__(self, index):
        return super().__getitem__(random.randrange(len(self.dataset)))


class AssumesSevenClasses(TutorialTripletDataset):
    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        positive_index = index
        while positive_index == index:
            positive_index = random.choice(self.label_to_indices[anchor_label])
        negative_label = random.choice([c for c in range(7) if c != anchor_label])  # bug: hard-coded 7
        negative_index = random.choice(self.label_to_indices[negative_label])
        return anchor_img, self.dataset[positive_index][0], self.dataset[negative_index][0]


class ScansDatasetPerItem(Dataset):
    """Correct triplets, but finds labels by loading images on every call (rejection sampling)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        anchor_img, anchor_label = self.dataset[index]
        while True:
            j = random.randrange(len(self.dataset))
            positive_img, label = self.dataset[j]
            if label == anchor_label and j != index:
                break
        while True:
            negative_img, label = self.dataset[random.randrange(len(self.dataset))]
            if label != anchor_label:
                break
        return anchor_img, positive_img, negative_img


class TransformsImages(TutorialTripletDataset):
    """Normalises the images again on the way out."""

    def __getitem__(self, index):
        return tuple((x - 0.5) / 0.5 for x in super().__getitem__(index))


class LabelsThroughGetitem(TutorialTripletDataset):
    """Reads every label through dataset[i] in __init__: loads (decodes) every image to throw it away."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.labels = [label for _, label in dataset]
        self.label_to_indices = {label: [i for i, y in enumerate(self.labels) if y == label]
                                 for label in set(self.labels)}


class OtherAttributeNames(TutorialTripletDataset):
    """The map named ``labels_to_indices`` and ``self.labels`` the range of class ids: later cells break."""

    def __init__(self, dataset):
        self.dataset = dataset
        targets = list(dataset.targets)
        self.labels = list(range(len(set(targets))))
        self.labels_to_indices = {c: [i for i, y in enumerate(targets) if y == c] for c in self.labels}

    def __getitem__(self, index):
        anchor_label = self.dataset.targets[index]
        positive_index = random.choice([j for j in self.labels_to_indices[anchor_label] if j != index])
        negative_label = random.choice([c for c in self.labels if c != anchor_label])
        negative_index = random.choice(self.labels_to_indices[negative_label])
        return self.dataset[index][0], self.dataset[positive_index][0], self.dataset[negative_index][0]


class LabelsAreClassIds(TutorialTripletDataset):
    """``self.labels`` the sorted class ids, not one label per item."""

    def __init__(self, dataset):
        super().__init__(dataset)
        self.item_labels, self.labels = self.labels, sorted(set(self.labels))

    def __getitem__(self, index):
        labels, self.labels = self.labels, self.item_labels
        try:
            return super().__getitem__(index)
        finally:
            self.labels = labels


MUTANTS = {
    "reads labels through dataset[i]": (LabelsThroughGetitem, "without loading images"),
    "map named labels_to_indices": (OtherAttributeNames, "self.label_to_indices"),
    "labels are the class ids": (LabelsAreClassIds, "one int label per item"),
    "positive drawn from another class": (PositiveFromAnotherClass, "the positive has the anchor's label"),
    "negative drawn from anchor's class": (NegativeFromAnchorClass, "the negative has another label"),
    "negative any index, label unchecked": (NegativeAnyIndex, "the negative has another label"),
    "positive is the anchor": (PositiveIsAnchor, "the positive is not the anchor itself"),
    "positive can be the anchor": (PositiveMayBeAnchor, "the positive is not the anchor itself"),
    "positive always the same image": (AlwaysFirstPositive, "positives vary over draws"),
    "negative always the next class": (NegativeAlwaysNextClass, "negatives come from every other class"),
    "__len__ is the number of classes": (LenIsNumberOfClasses, "__len__ equals the wrapped dataset's"),
    "__len__ three times too long": (LenTimesThree, "__len__ equals the wrapped dataset's"),
    "returns the label too": (ReturnsLabelsToo, "an item is (anchor, positive, negative) images"),
    "returns (image, label) pairs": (ReturnsPairs, "an item is (anchor, positive, negative) images"),
    "returns indices": (ReturnsIndices, "an item is (anchor, positive, negative) images"),
    "anchor ignores the index": (AnchorFromShuffledIndex, "the anchor is the image at the index"),
    "assumes seven classes": (AssumesSevenClasses, "an item is (anchor, positive, negative) images"),
    "loads images to find labels": (ScansDatasetPerItem, "loads only the images it returns"),
    "transforms the images": (TransformsImages, "an item is (anchor, positive, negative) images"),
}
