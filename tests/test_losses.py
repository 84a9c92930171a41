"""Batch-hard triplet loss against a loop over every (anchor, positive, negative)."""

import pytest
import torch
import torch.nn.functional as F

from helper_utils.losses import BatchHardTripletLoss, batch_hard_triplet_loss


def _loop_oracle(embeddings, labels, margin, normalize):
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    losses = []
    for a in range(len(labels)):
        pos = [torch.dist(embeddings[a], embeddings[p]) for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [torch.dist(embeddings[a], embeddings[n]) for n in range(len(labels)) if labels[n] != labels[a]]
        if pos and neg:
            losses.append(torch.relu(max(pos) - min(neg) + margin))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("margin", [0.1, 1.0])
def test_matches_loop_oracle(normalize, margin):
    torch.manual_seed(0)
    embeddings = torch.randn(12, 5)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 1, 0])  # class 3 has no positive: skipped
    got = batch_hard_triplet_loss(embeddings, labels, margin, normalize)
    assert torch.allclose(got, _loop_oracle(embeddings, labels, margin, normalize), atol=1e-5)


def test_hand_computed_example():
    # 1-D points: class 0 at 0 and 1, class 1 at 3. Anchor 0: d(a,p)=1, d(a,n)=3 -> relu(1-3+2.5)=0.5
    # anchor 1: d=1, d(1,3)=2 -> 1.5; anchor at 3 has no positive -> skipped. Mean 1.0
    embeddings = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([0, 0, 1])
    assert batch_hard_triplet_loss(embeddings, labels, margin=2.5, normalize=False).item() == pytest.approx(1.0)


def test_gradients_are_finite_with_duplicate_embeddings():
    embeddings = torch.ones(4, 3, requires_grad=True)
    loss = BatchHardTripletLoss(margin=0.2)(embeddings, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


def test_batch_without_valid_anchor_gives_zero():
    embeddings = torch.randn(3, 4, requires_grad=True)
    loss = batch_hard_triplet_loss(embeddings, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
