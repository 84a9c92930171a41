"""Grader of notebook 04: ``TripletDataset``."""

from __future__ import annotations

import operator
from collections import Counter
from typing import Any

import torch

from unittests.framework import Case, check, fail, grade, is_stub_instance, require_answer

__all__ = ["test_triplet_dataset"]

# A small stand-in for ImageFolder: four classes of 5, 2, 4 and 3 images, interleaved (not sorted
# by class), so an answer that assumes contiguous classes, a fixed class count or that a class
# has three or more images shows it. No class has a single image: the anchor could not get a
# positive other than itself, and the tutorial's "draw again while positive == anchor" would spin.
_CLASSES = ["dress", "hat", "pants", "shoes"]
_LABELS = [2, 0, 3, 1, 0, 2, 3, 0, 2, 1, 0, 3, 2, 0]
_ROUNDS = 50  # triplets drawn per anchor: enough to see every other class as a negative
_MAX_LOADS_PER_TRIPLET = 6  # three images plus slack; a scan of the dataset per item costs far more


class _FakeImageDataset:
    """Map-style dataset of ``(image, label)``: image ``i`` is a (3, 4, 4) tensor filled with ``i``.

    Has ImageFolder's attributes (``classes``, ``class_to_idx``, ``samples``, ``targets``), so any
    of them can serve to build the label map; ``__getitem__`` raises IndexError past the end, so
    ``for image, label in dataset`` works too.
    """

    def __init__(self) -> None:
        self.classes = list(_CLASSES)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = [(f"{self.classes[label]}/{i}.jpg", label) for i, label in enumerate(_LABELS)]
        self.targets = list(_LABELS)
        self.images = [torch.full((3, 4, 4), float(i)) for i in range(len(_LABELS))]
        self.loads = 0  # how many items were read through __getitem__

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        self.loads += 1
        return self.images[i], self.targets[i]

    def index_of(self, image: Any):
        """Which image this is, or None when it is not one of this dataset's images, unchanged."""
        if not isinstance(image, torch.Tensor) or image.shape != (3, 4, 4):
            return None
        i = int(round(float(image.flatten()[0])))
        if 0 <= i < len(self.images) and torch.equal(image, self.images[i]):
            return i
        return None


def _build(TripletDataset):
    data = _FakeImageDataset()
    return data, TripletDataset(data)


def _describe(item: Any) -> str:
    if isinstance(item, torch.Tensor):
        return f"tensor of shape {tuple(item.shape)}"
    if isinstance(item, (tuple, list)):
        return f"{type(item).__name__} of {len(item)}: ({', '.join(_describe(x) for x in item)})"
    return type(item).__name__


def _item_hint(item: Any) -> str:
    if isinstance(item, (tuple, list)) and len(item) == 3 and any(isinstance(x, (tuple, list)) for x in item):
        return "return images only: dataset[j] is an (image, label) pair, take its image with [0]"
    if isinstance(item, (tuple, list)) and len(item) > 3:
        return "return only (anchor, positive, negative) images, without labels or indices"
    if isinstance(item, (tuple, list)) and any(isinstance(x, int) for x in item):
        return "return the images, not their indices: look them up with self.dataset[j][0]"
    return "__getitem__ should return a tuple (anchor_img, positive_img, negative_img)"


def _get(triplets, index: int):
    """``triplets[index]``, with a specific hint for the lookup errors a wrong label set causes."""
    try:
        return triplets[index]
    except KeyError as e:
        fail("a triplet", f"KeyError: {e}",
             "a label that is not in the dataset: take the labels from the data (e.g. label_to_indices.keys()), "
             "don't hard-code the number of classes")
    except IndexError as e:
        fail("a triplet", f"IndexError: {e}", "an index past the end of the wrapped dataset: draw indices from "
                                              "label_to_indices, below len(dataset)")


def _draw(TripletDataset):
    """Draw ``_ROUNDS`` triplets per anchor; return (data, [(i, anchor, positive, negative) indices])."""
    data, triplets = _build(TripletDataset)
    data.loads = 0  # reading labels in __init__ is fine; count only what __getitem__ loads
    draws = []
    for _ in range(_ROUNDS):
        for i in range(len(data)):
            item = _get(triplets, i)
            if not (isinstance(item, (tuple, list)) and len(item) == 3):
                fail("a tuple (anchor, positive, negative)", _describe(item), _item_hint(item))
            found = [data.index_of(x) for x in item]
            if None in found:
                bad = item[found.index(None)]
                fail("each of the three to be an image of the wrapped dataset, unchanged",
                     _describe(bad), _item_hint(item) if not isinstance(bad, torch.Tensor) else
                     "return the images as the wrapped dataset gives them: no transform, copy or stacking")
            draws.append((i, *found))
    return data, draws


def _case_builds(TripletDataset):
    data, triplets = _build(TripletDataset)
    check(triplets is not None, expected="a TripletDataset", got="None",
          hint="TripletDataset(dataset) should build a dataset object")


def _case_no_loads_in_init(TripletDataset):
    data, _ = _build(TripletDataset)
    check(data.loads == 0, expected="no image loaded while building (labels read from dataset.targets)",
          got=f"{data.loads} images loaded through dataset[i] in __init__ ({len(data)} items)",
          hint="build the label map from dataset.targets without loading images: reading labels through "
               "dataset[i] decodes and transforms every photo only to throw it away")


def _case_attributes(TripletDataset):
    data, triplets = _build(TripletDataset)
    if not hasattr(triplets, "label_to_indices"):
        fail("an attribute `self.label_to_indices`", "no such attribute",
             "name the label -> indices map self.label_to_indices, as the exercise says: later cells of the "
             "notebook use it")
    if not hasattr(triplets, "labels"):
        fail("an attribute `self.labels`", "no such attribute",
             "keep the labels in self.labels, as the exercise says: one int label per item, from dataset.targets")
    try:
        labels = [int(label) for label in triplets.labels]
    except (TypeError, ValueError) as e:
        fail("self.labels: one int label per item", f"{type(e).__name__}: {e}",
             "self.labels holds one int label per item of the wrapped dataset: [int(t) for t in dataset.targets]")
    check(labels == data.targets, expected=f"self.labels == dataset.targets ({len(data)} labels, one per item)",
          got=f"{len(labels)} labels: {labels}",
          hint="self.labels holds one int label per item of the wrapped dataset (not the list of class ids): "
               "[int(t) for t in dataset.targets]")
    mapping = triplets.label_to_indices
    want = {label: [i for i, y in enumerate(data.targets) if y == label] for label in sorted(set(data.targets))}
    try:
        got = {int(label): sorted(int(i) for i in indices) for label, indices in dict(mapping).items()}
    except (TypeError, ValueError) as e:
        fail("self.label_to_indices: a dict label -> list of indices", f"{type(e).__name__}: {e}",
             "self.label_to_indices maps each label to the list of indices that have it")
    check(got == want, expected=f"self.label_to_indices == {want}", got=got,
          hint="self.label_to_indices maps each label to the list of the indices that have it, every index once")


def _case_len(TripletDataset):
    data, triplets = _build(TripletDataset)
    n = len(triplets)
    check(n == len(data), expected=len(data), got=n,
          hint="__len__ should equal the wrapped dataset's: return len(self.dataset)")


def _case_items(TripletDataset):
    data, triplets = _build(TripletDataset)
    item = _get(triplets, 0)
    check(isinstance(item, (tuple, list)) and len(item) == 3, expected="a tuple of 3 images",
          got=_describe(item), hint=_item_hint(item))
    for name, x in zip(("anchor", "positive", "negative"), item):
        check(isinstance(x, torch.Tensor) and x.shape == data.images[0].shape,
              expected=f"{name}: the wrapped dataset's image, a tensor of shape {tuple(data.images[0].shape)}",
              got=f"{name}: {_describe(x)}", hint=_item_hint(item))
        check(data.index_of(x) is not None, expected=f"{name}: one of the wrapped dataset's images, unchanged",
              got=f"{name}: other values",
              hint="return the images as the wrapped dataset gives them: no transform, copy or stacking")


def _case_anchor(TripletDataset):
    _, draws = _draw(TripletDataset)
    wrong = [(i, a) for i, a, _, _ in draws if a != i]
    check(not wrong, expected="triplets[i][0] is image i of the wrapped dataset",
          got=f"triplets[{wrong[0][0]}][0] is image {wrong[0][1]}" if wrong else "",
          hint="the anchor is the image at the requested index: self.dataset[index][0]")


def _case_positive_label(TripletDataset):
    data, draws = _draw(TripletDataset)
    wrong = [(i, p) for i, _, p, _ in draws if data.targets[p] != data.targets[i]]
    check(not wrong, expected="the positive always has the anchor's label",
          got=(f"{len(wrong)} of {len(draws)} positives from another class, e.g. anchor {wrong[0][0]} "
               f"(label {data.targets[wrong[0][0]]}) with positive {wrong[0][1]} (label {data.targets[wrong[0][1]]})")
          if wrong else "",
          hint="positive drawn from another class: pick the positive among label_to_indices[anchor_label]")


def _case_positive_not_anchor(TripletDataset):
    _, draws = _draw(TripletDataset)
    same = [i for i, _, p, _ in draws if p == i]
    check(not same, expected="a positive different from the anchor (every class here has 2+ images)",
          got=f"the anchor itself as its positive in {len(same)} of {len(draws)} triplets" if same else "",
          hint="positive can be the anchor itself: draw again while positive_index == index "
               "(or leave the anchor's index out of the choice)")


def _case_positive_varies(TripletDataset):
    data, draws = _draw(TripletDataset)
    seen = {i: set() for i in range(len(data))}
    for i, _, p, _ in draws:
        seen[i].add(p)
    for i, got in seen.items():
        wanted = {j for j in range(len(data)) if data.targets[j] == data.targets[i] and j != i}
        if not wanted <= got:
            fail(f"over {_ROUNDS} draws, anchor {i} paired with each of {sorted(wanted)}",
                 f"only {sorted(got)}",
                 "the positive is always the same image(s): draw it at random among the anchor's class")


def _case_negative_label(TripletDataset):
    data, draws = _draw(TripletDataset)
    wrong = [(i, n) for i, _, _, n in draws if data.targets[n] == data.targets[i]]
    check(not wrong, expected="the negative never has the anchor's label",
          got=(f"{len(wrong)} of {len(draws)} negatives from the anchor's class, e.g. anchor {wrong[0][0]} "
               f"with negative {wrong[0][1]} (both label {data.targets[wrong[0][0]]})") if wrong else "",
          hint="negative drawn from anchor's class: draw the negative label among the *other* classes, "
               "then an index of that label")


def _case_negative_classes(TripletDataset):
    data, draws = _draw(TripletDataset)
    seen: dict[int, Counter] = {label: Counter() for label in set(data.targets)}
    for i, _, _, n in draws:
        seen[data.targets[i]][data.targets[n]] += 1
    for label, counts in sorted(seen.items()):
        wanted = set(seen) - {label}
        if not wanted <= set(counts):
            fail(f"anchors of class {label} get negatives from every other class {sorted(wanted)}",
                 f"negatives only from classes {sorted(counts)}",
                 "the negative always comes from the same class(es): draw the negative class at random "
                 "among all the other classes")


def _case_loads(TripletDataset):
    data, draws = _draw(TripletDataset)
    per_triplet = data.loads / len(draws)
    check(per_triplet <= _MAX_LOADS_PER_TRIPLET,
          expected=f"at most {_MAX_LOADS_PER_TRIPLET} images loaded per triplet (it returns 3)",
          got=f"{per_triplet:.1f} loads of dataset[j] per triplet",
          hint="__getitem__ loads images to find labels: build label -> indices once in __init__ "
               "(from dataset.targets) and only load the three images you return")


def test_triplet_dataset(TripletDataset):
    """Grade ``TripletDataset(dataset)`` on a small fake ImageFolder of four classes."""
    cases = [
        Case("TripletDataset is defined",
             lambda: require_answer(TripletDataset, "TripletDataset",
                                    lambda t: is_stub_instance(_build(t)[1], ("labels", "label_to_indices"))),
             required=True),
        Case("builds from a dataset of (image, label)", lambda: _case_builds(TripletDataset), required=True),
        Case("builds its label map without loading images", lambda: _case_no_loads_in_init(TripletDataset)),
        Case("self.labels and self.label_to_indices as the exercise describes",
             lambda: _case_attributes(TripletDataset)),
        Case("__len__ equals the wrapped dataset's", lambda: _case_len(TripletDataset)),
        Case("an item is (anchor, positive, negative) images", lambda: _case_items(TripletDataset), required=True),
        Case("the anchor is the image at the index", lambda: _case_anchor(TripletDataset)),
        Case("the positive has the anchor's label", lambda: _case_positive_label(TripletDataset)),
        Case("the positive is not the anchor itself", lambda: _case_positive_not_anchor(TripletDataset)),
        Case("positives vary over draws", lambda: _case_positive_varies(TripletDataset)),
        Case("the negative has another label", lambda: _case_negative_label(TripletDataset)),
        Case("negatives come from every other class", lambda: _case_negative_classes(TripletDataset)),
        Case("loads only the images it returns", lambda: _case_loads(TripletDataset)),
    ]
    return grade("test_triplet_dataset", cases)
