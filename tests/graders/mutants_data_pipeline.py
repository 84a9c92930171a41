"""Answers to notebook 01's exercises that ``unittests.test_transforms`` and
``unittests.test_class_weights`` must judge correctly: correct alternatives, the learner's
stubs, and plausible mistakes, each mistake with a phrase its hint must contain.

Transforms answers are ``(train_transform, val_transform)`` pairs.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torchvision import transforms as T
from torchvision.transforms import v2
from torchvision.transforms import functional as TF

from helper_utils.reference import train_transform as ref_train
from helper_utils.reference import val_transform as ref_val

HALF = (0.5, 0.5, 0.5)


# =======================================================================================
# train_transform, val_transform
# =======================================================================================

def _v2(*augment):
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((64, 64), antialias=True),
        *augment,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    ])


def _functional_val(img):
    """A plain function, no Compose."""
    return TF.normalize(TF.to_tensor(TF.resize(img, [64, 64])), HALF, HALF)


def _functional_train(img):
    if torch.rand(1).item() < 0.5:
        img = TF.hflip(img)
    img = TF.resize(img, [64, 64])
    return _functional_val(TF.rotate(img, float(torch.empty(1).uniform_(-10, 10))))


TRANSFORMS_CORRECT = {
    "tutorial": (
        T.Compose([T.Resize((64, 64)), T.RandomHorizontalFlip(), T.RandomRotation(10), T.ToTensor(),
                   T.Normalize(HALF, HALF)]),
        T.Compose([T.Resize((64, 64)), T.ToTensor(), T.Normalize(HALF, HALF)]),
    ),
    "v2-api-with-colour-jitter": (
        _v2(v2.RandomHorizontalFlip(), v2.RandomRotation(15), v2.ColorJitter(brightness=0.2, contrast=0.2)),
        _v2(),
    ),
    "plain-functions": (_functional_train, _functional_val),
}

TRANSFORMS_STUBS = {"both-none": (None, None), "val-none": (ref_train, None), "train-none": (None, ref_val)}


def _pair(train_steps, val_steps):
    return T.Compose(train_steps), T.Compose(val_steps)


_AUG = [T.RandomHorizontalFlip(), T.RandomRotation(10)]

TRANSFORMS_MUTANTS = {
    "no-normalize": (_pair([T.Resize((64, 64)), *_AUG, T.ToTensor()], [T.Resize((64, 64)), T.ToTensor()]),
                     "missing Normalize"),
    "augmentation-in-val": ((ref_train, ref_train), "augmentation in val_transform"),
    "no-augmentation-in-train": ((ref_val, ref_val), "train_transform should augment"),
    "swapped": ((ref_val, ref_train), "augmentation in val_transform"),
    "no-resize": (_pair([*_AUG, T.ToTensor(), T.Normalize(HALF, HALF)], [T.ToTensor(), T.Normalize(HALF, HALF)]),
                  "no resize"),
    "resize-shorter-side": (_pair([T.Resize(64), *_AUG, T.ToTensor(), T.Normalize(HALF, HALF)],
                                  [T.Resize(64), T.ToTensor(), T.Normalize(HALF, HALF)]),
                            "use Resize((64, 64)) with a tuple"),
    "imagenet-normalize": (_pair([T.Resize((64, 64)), *_AUG, T.ToTensor(),
                                  T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))],
                                 [T.Resize((64, 64)), T.ToTensor(),
                                  T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]),
                           "ImageNet's mean and std"),
    "returns-pil": (_pair([T.Resize((64, 64)), *_AUG], [T.Resize((64, 64))]), "ToTensor missing"),
    "v2-without-scale": (
        (v2.Compose([v2.ToImage(), v2.Resize((64, 64)), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32)]),
         v2.Compose([v2.ToImage(), v2.Resize((64, 64)), v2.ToDtype(torch.float32)])),
        "values are in [0, 255]"),
    "v2-uint8": ((v2.Compose([v2.ToImage(), v2.Resize((64, 64)), v2.RandomHorizontalFlip()]),
                  v2.Compose([v2.ToImage(), v2.Resize((64, 64))])), "convert to float"),
    "normalize-only-in-val": (_pair([T.Resize((64, 64)), *_AUG, T.ToTensor()],
                                    [T.Resize((64, 64)), T.ToTensor(), T.Normalize(HALF, HALF)]),
                              "in train_transform too"),
    "flip-without-rotation": (_pair([T.Resize((64, 64)), T.RandomHorizontalFlip(), T.ToTensor(),
                                     T.Normalize(HALF, HALF)],
                                    [T.Resize((64, 64)), T.ToTensor(), T.Normalize(HALF, HALF)]),
                              "add transforms.RandomRotation(10)"),
    "rotation-without-flip": (_pair([T.Resize((64, 64)), T.RandomRotation(10), T.ToTensor(), T.Normalize(HALF, HALF)],
                                    [T.Resize((64, 64)), T.ToTensor(), T.Normalize(HALF, HALF)]),
                              "add transforms.RandomHorizontalFlip()"),
}


# =======================================================================================
# compute_class_weights
# =======================================================================================

def weights_tutorial(targets, num_classes):
    """The tutorial's Counter and ``total / count``, made safe for absent classes."""
    counts = Counter(int(t) for t in targets)
    total = sum(counts.values())
    return torch.tensor([total / counts[c] if counts[c] else 0.0 for c in range(num_classes)], dtype=torch.float)


def weights_numpy_normalised(targets, num_classes):
    """numpy counting, 1/count normalised to sum 1, 0 for absent classes."""
    counts = np.bincount(np.asarray(list(targets), dtype=np.int64), minlength=num_classes).astype(np.float64)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.from_numpy(inverse / inverse.sum()).float()


def weights_reciprocal(targets, num_classes):
    counts = torch.bincount(torch.as_tensor(targets).long().flatten(), minlength=num_classes).float()
    return torch.where(counts > 0, counts.reciprocal(), torch.zeros_like(counts))


WEIGHTS_CORRECT = {"tutorial": weights_tutorial, "numpy-normalised": weights_numpy_normalised,
                   "reciprocal": weights_reciprocal}


def weights_inf_for_absent(targets, num_classes):
    counts = torch.bincount(torch.as_tensor(targets).long().flatten(), minlength=num_classes)
    return counts.float().reciprocal()  # inf where a class has no images


def weights_nan_normalised_absent(targets, num_classes):
    """numpy 1/count with inf for absent classes, normalised over the finite ones."""
    counts = np.bincount(np.asarray(list(targets), dtype=np.int64), minlength=num_classes).astype(np.float64)
    with np.errstate(divide="ignore"):
        inverse = 1.0 / counts
    return torch.from_numpy(inverse / inverse[np.isfinite(inverse)].sum()).float()


def weights_stub(targets, num_classes):
    return None


WEIGHTS_STUBS = {"stub": weights_stub, "none": None}


def _bincount(targets, num_classes):
    return torch.bincount(torch.as_tensor(list(targets), dtype=torch.long), minlength=num_classes).float()


def weights_frequency(targets, num_classes):
    counts = _bincount(targets, num_classes)
    return counts / counts.sum()


def weights_unique_classes(targets, num_classes):
    _, counts = torch.unique(torch.as_tensor(list(targets)), return_counts=True)
    return counts.sum() / counts.float()


def weights_numpy(targets, num_classes):
    counts = np.bincount(np.asarray(list(targets)), minlength=num_classes)
    return counts.sum() / counts


def weights_counts_only(targets, num_classes):
    return _bincount(targets, num_classes)


def weights_integer(targets, num_classes):
    counts = torch.bincount(torch.as_tensor(list(targets)), minlength=num_classes)
    return counts.sum() // counts.clamp(min=1)


def weights_zero_division(targets, num_classes):
    counts = Counter(targets)
    total = len(targets)
    return torch.tensor([total / counts[c] for c in range(num_classes)])


def weights_counter_on_tensor(targets, num_classes):
    """Counter over a tensor's elements counts each 0-d tensor once (they hash by identity)."""
    counts = Counter(targets)
    total = sum(counts.values())
    return torch.tensor([total / max(counts.get(c, 0), 1) for c in range(num_classes)], dtype=torch.float32)


def weights_list(targets, num_classes):
    counts = _bincount(targets, num_classes)
    return (counts.sum() / counts).tolist()


WEIGHTS_MUTANTS = {
    "frequency-not-inverse": (weights_frequency, "count/total is the frequency"),
    "length-of-unique-classes": (weights_unique_classes, "length equals number of classes present"),
    "numpy-return": (weights_numpy, "return a torch tensor"),
    "list-return": (weights_list, "return a torch tensor"),
    "counts-only": (weights_counts_only, "those are the class counts"),
    "integer-division": (weights_integer, "use float division"),
    "zero-division": (weights_zero_division, "instead of dividing by zero"),
    "counter-on-tensor": (weights_counter_on_tensor, "torch.as_tensor(list(targets))"),
    "inf-for-absent-class": (weights_inf_for_absent, "give a class with no images weight 0"),
    "inf-normalised-for-absent-class": (weights_nan_normalised_absent, "give a class with no images weight 0"),
}
