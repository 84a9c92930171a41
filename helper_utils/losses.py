"""Triplet losses that mine their triplets inside a batch of ``(embeddings, labels)``.

``nn.TripletMarginLoss`` takes triplets chosen beforehand, usually at random; many random
triplets are already easy (the negative is far away), give zero loss and teach nothing
(notebook 05 counts them).
Mining picks, for every anchor in a batch, the triplets that still violate the margin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helper_utils.reference import batch_hard_triplet_loss as _reference_batch_hard
from helper_utils.reference import pairwise_distances  # notebook 05's answer: exact zeros, finite gradients
from helper_utils.retrieval import l2_normalize

__all__ = ["hard_triplet_loss", "semi_hard_triplet_loss", "MinedTripletLoss"]


def hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
                      normalize: bool = True) -> torch.Tensor:
    """Notebook 05's batch-hard loss (its reference answer), as the kit trains with it: ``mining="hard"``.

    For each anchor: its farthest positive and its nearest negative in the batch (Hermans et al.,
    2017). The maths is the notebook's ``batch_hard_triplet_loss``; this adds the L2 normalisation
    and a zero loss for a batch where no anchor has both a positive and a negative (the notebook's
    answer gives NaN there). Its own name keeps it apart from the exercise's answer, which
    ``helper_utils.batch_hard_triplet_loss`` is.

    Args:
        embeddings: ``(B, D)``.
        labels: ``(B,)``.
        margin: wanted gap between the positive and the negative distance.
        normalize: L2-normalise the embeddings first, so the margin means the same at every scale.
    """
    if normalize:
        embeddings = l2_normalize(embeddings)
    same = labels[:, None] == labels[None, :]  # (B, B), the diagonal included
    if not ((same.sum(dim=1) > 1) & (~same).any(dim=1)).any():
        return embeddings.sum() * 0.0  # no anchor has both: nothing to learn from this batch
    return _reference_batch_hard(embeddings, labels, margin)


def semi_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
                           normalize: bool = True) -> torch.Tensor:
    """For each (anchor, positive) pair: the nearest negative that is still farther than the positive.

    A semi-hard negative (Schroff et al., FaceNet, 2015) lies beyond the positive but within the
    margin, ``d(a, p) < d(a, n) < d(a, p) + margin``: it still gives a loss without being one of the
    hardest negatives (closer than the positive, often mislabelled or look-alike photos that can
    pull the embedding apart). The nearest negative beyond the positive is semi-hard when one lies
    within the margin; otherwise the pair is easy and adds 0. When no negative is farther than the
    positive, the farthest negative is used.

    Returns:
        The mean of ``relu(d(a, p) - d(a, n_semi_hard) + margin)`` over every (anchor, positive) pair.
    """
    if normalize:
        embeddings = l2_normalize(embeddings)
    distances = pairwise_distances(embeddings)  # (B, B)
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives = same & not_self  # (B, B): a, p
    negatives = (~same)[:, None, :]  # (B, 1, B): a, -, n
    d_ap = distances[:, :, None]  # (B, B, 1)
    d_an = distances[:, None, :]  # (B, 1, B)
    beyond = negatives & (d_an > d_ap)  # (B, B, B): negatives farther than this positive
    inf = torch.tensor(float("inf"), device=distances.device)
    semi_hard = torch.where(beyond, d_an, inf).min(dim=2).values  # (B, B)
    farthest = torch.where(negatives, d_an, -inf).max(dim=2).values  # (B, B)
    chosen = torch.where(torch.isinf(semi_hard), farthest, semi_hard)
    valid = positives & torch.isfinite(chosen)  # an anchor without negatives has nothing to learn
    if not valid.any():
        return embeddings.sum() * 0.0
    return F.relu(distances - chosen + margin)[valid].mean()


_MINERS = {"hard": hard_triplet_loss, "semihard": semi_hard_triplet_loss}


class MinedTripletLoss(torch.nn.Module):
    """``loss(embeddings, labels)`` with triplets mined in the batch: ``mining`` is "hard" or "semihard"."""

    def __init__(self, margin: float = 0.2, mining: str = "semihard", normalize: bool = True) -> None:
        super().__init__()
        if mining not in _MINERS:
            raise ValueError(f"mining should be one of {sorted(_MINERS)}, got {mining!r}")
        self.margin, self.mining, self.normalize = margin, mining, normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _MINERS[self.mining](embeddings, labels, self.margin, self.normalize)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, normalize={self.normalize}"
