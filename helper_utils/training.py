"""Training loops, evaluation and checkpoints for the classifier and the siamese network."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["compute_class_weights"]


def compute_class_weights(targets: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights, ``total / count``, as a float tensor of length ``num_classes``.

    Rare classes get larger weights so that weighted cross-entropy does not let the
    frequent classes dominate. A class with no samples gets weight 0 (it never appears).
    """
    counts = torch.bincount(torch.as_tensor(list(targets), dtype=torch.long), minlength=num_classes).float()
    weights = torch.zeros(num_classes)
    present = counts > 0
    weights[present] = counts.sum() / counts[present]
    return weights
