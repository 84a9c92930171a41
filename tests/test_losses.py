"""Batch-hard triplet loss against a loop over every (anchor, positive, negative)."""

import pytest
import torch
import torch.nn.functional as F

from helper_utils.losses import MinedTripletLoss, hard_triplet_loss, semi_hard_triplet_loss


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
    got = hard_triplet_loss(embeddings, labels, margin, normalize)
    assert torch.allclose(got, _loop_oracle(embeddings, labels, margin, normalize), atol=1e-5)


def test_hand_computed_example():
    # 1-D points: class 0 at 0 and 1, class 1 at 3. Anchor 0: d(a,p)=1, d(a,n)=3 -> relu(1-3+2.5)=0.5
    # anchor 1: d=1, d(1,3)=2 -> 1.5; anchor at 3 has no positive -> skipped. Mean 1.0
    embeddings = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([0, 0, 1])
    assert hard_triplet_loss(embeddings, labels, margin=2.5, normalize=False).item() == pytest.approx(1.0)


def test_gradients_are_finite_with_duplicate_embeddings():
    embeddings = torch.ones(4, 3, requires_grad=True)
    loss = MinedTripletLoss(margin=0.2, mining="hard")(embeddings, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


def test_batch_without_valid_anchor_gives_zero():
    embeddings = torch.randn(3, 4, requires_grad=True)
    loss = hard_triplet_loss(embeddings, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()


def _semi_hard_oracle(embeddings, labels, margin, normalize):
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    n = len(labels)
    losses = []
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            d_ap = torch.dist(embeddings[a], embeddings[p])
            negs = [torch.dist(embeddings[a], embeddings[k]) for k in range(n) if labels[k] != labels[a]]
            if not negs:
                continue
            beyond = [d for d in negs if d > d_ap]
            d_an = min(beyond) if beyond else max(negs)
            losses.append(torch.relu(d_ap - d_an + margin))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("margin", [0.2, 2.0])
def test_semi_hard_matches_loop_oracle(normalize, margin):
    torch.manual_seed(1)
    embeddings = torch.randn(10, 4)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 3, 1])
    got = semi_hard_triplet_loss(embeddings, labels, margin, normalize)
    assert torch.allclose(got, _semi_hard_oracle(embeddings, labels, margin, normalize), atol=1e-5)


def test_semi_hard_hand_computed_example():
    # 1-D: a=0 (class 0), p=1 (class 0), negatives at 0.5 and 3 (class 1).
    # pair (a=0,p=1): d_ap=1, negatives 0.5 and 3, semi-hard = 3 -> relu(1-3+0.5) = 0
    # pair (p=1 as anchor, 0 as positive): d=1, negatives at 0.5 and 2 -> 2 -> relu(1-2+0.5) = 0
    # class-1 pairs (0.5, 3): d=2.5, negatives from 0.5: 0.5, 0.5 -> none beyond -> farthest 0.5 -> 2.5
    #   from 3: d=2.5, negatives 3 and 2 -> none beyond -> farthest 3 -> relu(2.5-3+0.5) = 0
    embeddings = torch.tensor([[0.0], [1.0], [0.5], [3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    got = semi_hard_triplet_loss(embeddings, labels, margin=0.5, normalize=False)
    assert got.item() == pytest.approx(2.5 / 4)


def test_mined_loss_validates_mining_and_dispatches():
    embeddings, labels = torch.randn(8, 3), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert torch.equal(MinedTripletLoss(0.3, "hard")(embeddings, labels), hard_triplet_loss(embeddings, labels, 0.3))
    assert torch.equal(MinedTripletLoss(0.3, "semihard")(embeddings, labels),
                       semi_hard_triplet_loss(embeddings, labels, 0.3))
    with pytest.raises(ValueError, match="semihard"):
        MinedTripletLoss(mining="easy")


# Notebook 05's answers (helper_utils.reference) against the kit's losses: the notebook prints both and says
# they agree, so they must, on batches like the course's (normalised, P x K, with duplicates).


@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_reference_batch_hard_matches_the_kit_and_the_loop(margin):
    from helper_utils.reference import batch_hard_triplet_loss as reference_loss

    torch.manual_seed(2)
    embeddings = F.normalize(torch.randn(24, 8), dim=1)
    embeddings[5] = embeddings[4]  # a duplicate inside one class
    labels = torch.arange(6).repeat_interleave(4)  # P=6 classes x K=4 photos
    got = reference_loss(embeddings, labels, margin)
    assert torch.allclose(got, hard_triplet_loss(embeddings, labels, margin, normalize=False), atol=1e-5)
    assert torch.allclose(got, _loop_oracle(embeddings, labels, margin, normalize=False), atol=1e-5)


def test_reference_pairwise_distances_exact_zeros_and_finite_gradients_on_a_course_sized_batch():
    from helper_utils.reference import pairwise_distances as reference_distances

    torch.manual_seed(3)
    embeddings = torch.rand(64, 64)  # non-negative like the encoder's, a training batch's size
    embeddings[10] = embeddings[11]
    embeddings.requires_grad_(True)
    distances = reference_distances(embeddings)
    assert (distances.diagonal() == 0).all() and distances[10, 11] == 0
    assert torch.allclose(distances, torch.cdist(embeddings.double(), embeddings.double()).float(), atol=1e-5)
    distances.sum().backward()
    assert torch.isfinite(embeddings.grad).all()
