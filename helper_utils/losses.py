"""Triplet losses that mine their triplets inside a batch of ``(embeddings, labels)``.

``nn.TripletMarginLoss`` takes triplets chosen beforehand, usually at random; most random
triplets are already easy (the negative is far away), give zero loss and teach nothing.
Mining picks, for every anchor in a batch, the triplets that still violate the margin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pairwise_distances", "batch_hard_triplet_loss", "BatchHardTripletLoss"]


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(B, B)`` between the rows of ``embeddings (B, D)``."""
    squared = torch.cdist(embeddings, embeddings).pow(2)
    return squared.clamp_min(1e-12).sqrt()  # clamp: the gradient of sqrt at 0 is infinite


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
                            normalize: bool = True) -> torch.Tensor:
    """For each anchor: its farthest positive and its nearest negative in the batch (Hermans et al., 2017).

    Args:
        embeddings: ``(B, D)``.
        labels: ``(B,)``; each anchor needs at least one positive and one negative in the batch.
        margin: wanted gap between the positive and the negative distance.
        normalize: L2-normalise the embeddings first, so the margin means the same at every scale.

    Returns:
        The mean of ``relu(d(a, p_hardest) - d(a, n_hardest) + margin)`` over valid anchors.
    """
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    distances = pairwise_distances(embeddings)  # (B, B)
    same = labels[:, None] == labels[None, :]  # (B, B)
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives = same & not_self
    negatives = ~same
    hardest_positive = (distances * positives).max(dim=1).values  # farthest same-class item
    hardest_negative = distances.masked_fill(~negatives, float("inf")).min(dim=1).values  # nearest other class
    valid = positives.any(dim=1) & negatives.any(dim=1)
    if not valid.any():
        return embeddings.sum() * 0.0  # no anchor has both: nothing to learn from this batch
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()


class BatchHardTripletLoss(torch.nn.Module):
    """Module form of :func:`batch_hard_triplet_loss`: ``loss(embeddings, labels)``."""

    def __init__(self, margin: float = 0.2, normalize: bool = True) -> None:
        super().__init__()
        self.margin, self.normalize = margin, normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return batch_hard_triplet_loss(embeddings, labels, self.margin, self.normalize)
