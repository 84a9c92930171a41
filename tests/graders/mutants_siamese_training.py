"""Answers to notebook 05's exercises (``SiameseEncoder``, ``SiameseNetwork``, ``pairwise_distances``,
``batch_hard_triplet_loss``, ``recall_at_k``, ``ProjectionHead``): correct, stubs, wrong.

``*_CORRECT`` must pass their grader; ``*_STUBS`` and every ``*_MUTANTS`` entry must fail it.
Each mutant maps to ``(answer, name of a case that must fail, or words of the hint it must get)``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from helper_utils.losses import semi_hard_triplet_loss
from helper_utils.reference import MobileNetBackbone, pairwise_distances

# --------------------------------------------------------------------------- SiameseEncoder


class TutorialEncoder(nn.Module):
    """The tutorial's answer: AdaptiveAvgPool2d + Flatten."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.representation = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())

    def forward(self, x):
        features = self.backbone(x)
        return self.representation(features)


class _MeanPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class MeanEncoder(nn.Module):
    """Another correct answer: a mean over H and W written by hand (flattening included)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.representation = _MeanPool()

    def forward(self, x):
        return self.representation(self.backbone(x))


ENCODER_CORRECT = {"tutorial (AdaptiveAvgPool2d + Flatten)": TutorialEncoder, "hand-written mean": MeanEncoder}


class StubEncoder(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = None
        self.representation = None

    def forward(self, x):
        return None


class NotAModuleEncoder:
    """Forgot to subclass nn.Module."""

    def __init__(self, backbone):
        self.backbone = backbone

    def __call__(self, x):
        return None


ENCODER_STUBS = {"None placeholder": None, "stub class": StubEncoder, "not an nn.Module": NotAModuleEncoder}


class MaxPoolEncoder(TutorialEncoder):
    def __init__(self, backbone):
        super().__init__(backbone)
        self.representation = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())


class NoFlattenEncoder(TutorialEncoder):
    def __init__(self, backbone):
        super().__init__(backbone)
        self.representation = nn.AdaptiveAvgPool2d(1)


class FlattenWithoutPoolEncoder(TutorialEncoder):
    def __init__(self, backbone):
        super().__init__(backbone)
        self.representation = nn.Flatten()


class CopiesBackboneEncoder(TutorialEncoder):
    def __init__(self, backbone):
        super().__init__(copy.deepcopy(backbone))


class NewBackboneEncoder(TutorialEncoder):
    """Ignores the backbone it is given and builds a fresh one."""

    def __init__(self, backbone):
        super().__init__(MobileNetBackbone())


class FixedKernelEncoder(TutorialEncoder):
    """AvgPool2d(4) fits only the course's 4x4 feature maps."""

    def __init__(self, backbone):
        super().__init__(backbone)
        self.representation = nn.Sequential(nn.AvgPool2d(4), nn.Flatten())


class ExtraLinearEncoder(TutorialEncoder):
    def __init__(self, backbone):
        super().__init__(backbone)
        self.representation = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 64))


class SumPoolEncoder(TutorialEncoder):
    def __init__(self, backbone):
        super().__init__(backbone)
        self.representation = nn.Sequential(nn.LPPool2d(1, kernel_size=(4, 4)), nn.Flatten())


class HardCodedViewEncoder(TutorialEncoder):
    """Pools correctly but reshapes to 64 channels."""

    def forward(self, x):
        return self.representation[0](self.backbone(x)).view(-1, 64)


class NoGradEncoder(TutorialEncoder):
    def forward(self, x):
        with torch.no_grad():
            features = self.backbone(x)
        return self.representation(features)


class FrozenBackboneEncoder(TutorialEncoder):
    def __init__(self, backbone):
        super().__init__(backbone)
        for p in self.backbone.parameters():
            p.requires_grad = False


ENCODER_MUTANTS = {
    "max pooling": (MaxPoolEncoder, "output is the average of the backbone's features"),
    "no flatten": (NoFlattenEncoder, "output shape (B, 64) with MobileNetBackbone"),
    "flatten without pooling": (FlattenWithoutPoolEncoder, "output shape (B, 64) with MobileNetBackbone"),
    "copies the backbone": (CopiesBackboneEncoder, "keeps the backbone it was given"),
    "builds a new backbone": (NewBackboneEncoder, "keeps the backbone it was given"),
    "fixed 4x4 pooling kernel": (FixedKernelEncoder, "works with another backbone ((B, 32, 3, 5) features)"),
    "extra linear layer": (ExtraLinearEncoder, "output is the average of the backbone's features"),
    "sum pooling": (SumPoolEncoder, "output is the average of the backbone's features"),
    "hard-coded 64 channels": (HardCodedViewEncoder, "works with another backbone ((B, 32, 3, 5) features)"),
    "backbone under no_grad": (NoGradEncoder, "gradients reach the backbone"),
    "freezes the backbone": (FrozenBackboneEncoder, "gradients reach the backbone"),
}


# --------------------------------------------------------------------------- SiameseNetwork


class TutorialNetwork(nn.Module):
    """The tutorial's answer."""

    def __init__(self, embedding_network):
        super().__init__()
        self.embedding_network = embedding_network

    def forward(self, anchor, positive, negative):
        anchor_output = self.embedding_network(anchor)
        positive_output = self.embedding_network(positive)
        negative_output = self.embedding_network(negative)
        return anchor_output, positive_output, negative_output

    def get_embedding(self, image):
        return self.embedding_network(image)


class BatchedNetwork(TutorialNetwork):
    """Another correct answer: one forward pass on the concatenated batch, split in three (a list)."""

    def forward(self, anchor, positive, negative):
        out = self.get_embedding(torch.cat([anchor, positive, negative]))
        return list(out.split(anchor.shape[0]))


NETWORK_CORRECT = {"tutorial": TutorialNetwork, "one batched pass": BatchedNetwork}


class StubNetwork(nn.Module):
    def __init__(self, embedding_network):
        super().__init__()
        self.embedding_network = None

    def forward(self, anchor, positive, negative):
        anchor_output = None
        positive_output = None
        negative_output = None
        return anchor_output, positive_output, negative_output

    def get_embedding(self, image):
        return None


NETWORK_STUBS = {"None placeholder": None, "stub class": StubNetwork}


class TwoEncodersNetwork(TutorialNetwork):
    """A second copy for the negatives: looks shared at first, drifts apart in training."""

    def __init__(self, embedding_network):
        super().__init__(embedding_network)
        self.negative_network = copy.deepcopy(embedding_network)

    def forward(self, anchor, positive, negative):
        return self.embedding_network(anchor), self.embedding_network(positive), self.negative_network(negative)


class ThreeCopiesNetwork(TutorialNetwork):
    def __init__(self, embedding_network):
        super().__init__(copy.deepcopy(embedding_network))


class ReturnsTwoNetwork(TutorialNetwork):
    def forward(self, anchor, positive, negative):
        return self.embedding_network(anchor), self.embedding_network(positive)


class NormalisesNetwork(TutorialNetwork):
    def get_embedding(self, image):
        return F.normalize(self.embedding_network(image), dim=1)

    def forward(self, anchor, positive, negative):
        return self.get_embedding(anchor), self.get_embedding(positive), self.get_embedding(negative)


class NormalisesForwardOnly(TutorialNetwork):
    def forward(self, anchor, positive, negative):
        return tuple(F.normalize(self.embedding_network(x), dim=1) for x in (anchor, positive, negative))


class AnchorThreeTimes(TutorialNetwork):
    def forward(self, anchor, positive, negative):
        out = self.embedding_network(anchor)
        return out, out, out


class SwappedOrder(TutorialNetwork):
    def forward(self, anchor, positive, negative):
        return self.embedding_network(anchor), self.embedding_network(negative), self.embedding_network(positive)


class DetachedNegative(TutorialNetwork):
    def forward(self, anchor, positive, negative):
        negative_output = self.embedding_network(negative).detach()
        return self.embedding_network(anchor), self.embedding_network(positive), negative_output


class ExtraHeadNetwork(TutorialNetwork):
    def __init__(self, embedding_network):
        super().__init__(embedding_network)
        self.head = nn.LazyLinear(8)

    def forward(self, anchor, positive, negative):
        return tuple(self.head(self.embedding_network(x)) for x in (anchor, positive, negative))


class NoGetEmbedding(TutorialNetwork):
    get_embedding = None


class RotatedOrder(TutorialNetwork):
    def forward(self, anchor, positive, negative):
        return self.embedding_network(negative), self.embedding_network(anchor), self.embedding_network(positive)


class ScalesInputsInPlace(TutorialNetwork):
    """Rescales the caller's images in place before embedding them."""

    def forward(self, anchor, positive, negative):
        return tuple(self.embedding_network(x.mul_(2.0)) for x in (anchor, positive, negative))


NETWORK_MUTANTS = {
    "two separate encoders": (TwoEncodersNetwork, "holds the one shared network's weights only"),
    "copies the network": (ThreeCopiesNetwork, "outputs follow the shared weights"),
    "returns only two": (ReturnsTwoNetwork, "forward returns three embeddings"),
    "normalises the embeddings": (NormalisesNetwork, "get_embedding(x) equals the embedding network's output"),
    "normalises in forward": (NormalisesForwardOnly, "each output embeds its own input, in order"),
    "anchor three times": (AnchorThreeTimes, "each output embeds its own input, in order"),
    "positive and negative swapped": (SwappedOrder, "each output embeds its own input, in order"),
    "outputs rotated": (RotatedOrder, "(anchor, positive, negative)"),
    "rescales its inputs in place": (ScalesInputsInPlace, "each output embeds its own input, in order"),
    "negative detached": (DetachedNegative, "gradients reach the shared network from all three outputs"),
    "extra head": (ExtraHeadNetwork, "holds the one shared network's weights only"),
    "no get_embedding": (NoGetEmbedding, "get_embedding(x) equals the embedding network's output"),
}


# --------------------------------------------------------------------------- pairwise_distances


def _differences_squared(x):
    return (x[:, None, :] - x[None, :, :]).pow(2).sum(dim=2)  # (N, N)


def pairwise_expanded(embeddings):
    """Another correct answer: |a|^2 + |b|^2 - 2ab, clamped, with exact zeros on the diagonal."""
    norms = embeddings.pow(2).sum(dim=1)
    squared = (norms[:, None] + norms[None, :] - 2 * embeddings @ embeddings.T).clamp_min(0)
    zero = (squared <= 1e-12) | torch.eye(len(embeddings), dtype=torch.bool)
    return squared.clamp_min(1e-12).sqrt().masked_fill(zero, 0.0)


def pairwise_cdist_direct(embeddings):
    """Another correct answer: torch.cdist without the matrix-product shortcut, diagonal set to 0."""
    distances = torch.cdist(embeddings, embeddings, compute_mode="donot_use_mm_for_euclid_dist")
    return distances.masked_fill(torch.eye(len(embeddings), dtype=torch.bool), 0.0)


PAIRWISE_CORRECT = {"|a|^2 + |b|^2 - 2ab, clamped and masked": pairwise_expanded,
                    "torch.cdist without mm, diagonal masked": pairwise_cdist_direct}


def pairwise_stub(embeddings):
    distances = None
    return distances


PAIRWISE_STUBS = {"None placeholder": None, "stub function": pairwise_stub}


def pairwise_squared(embeddings):
    return _differences_squared(embeddings)


def pairwise_plain_sqrt(embeddings):
    return _differences_squared(embeddings).sqrt()


def pairwise_where_without_clamp(embeddings):
    """The classic trap: torch.where picks 0, but sqrt's infinite gradient still multiplies a 0 into NaN."""
    squared = _differences_squared(embeddings)
    return torch.where(squared > 0, squared.sqrt(), torch.zeros_like(squared))


def pairwise_diagonal_only(embeddings):
    """Keeps sqrt away from 0 on the diagonal only (adds 1 there, then zeroes it): identical rows still give NaN."""
    eye = torch.eye(len(embeddings), dtype=torch.bool)
    squared = _differences_squared(embeddings)
    return torch.where(eye, torch.zeros_like(squared), (squared + eye.to(squared.dtype)).sqrt())


def pairwise_eps(embeddings):
    return (_differences_squared(embeddings) + 1e-8).sqrt()


def pairwise_cosine(embeddings):
    unit = F.normalize(embeddings, dim=1)
    return 1 - unit @ unit.T


def pairwise_centres_in_place(embeddings):
    embeddings -= embeddings.mean(dim=0)  # distances do not change, but the caller's tensor does
    squared = _differences_squared(embeddings)
    return squared.clamp_min(1e-12).sqrt().masked_fill(squared == 0, 0.0)


def pairwise_numpy(embeddings):
    x = embeddings.detach().numpy()
    return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)


def pairwise_cdist(embeddings):
    return torch.cdist(embeddings, embeddings)  # from 26 rows on: a formula that rounds, non-zero diagonal


def pairwise_detached(embeddings):
    return pairwise_expanded(embeddings).detach()


def pairwise_float32(embeddings):
    return pairwise_expanded(embeddings.float())


def pairwise_columns(embeddings):
    return pairwise_expanded(embeddings.T)


PAIRWISE_MUTANTS = {
    "squared distances": (pairwise_squared, "these are squared distances"),
    "plain sqrt (NaN gradient on the diagonal)": (pairwise_plain_sqrt, "finite gradients (sqrt of 0 on the diagonal)"),
    "torch.where without a clamp": (pairwise_where_without_clamp, "the gradient of sqrt at 0 is infinite"),
    "only the diagonal kept away from sqrt(0)": (pairwise_diagonal_only, "not only the diagonal"),
    "sqrt(x + eps): diagonal not 0": (pairwise_eps, "sqrt(eps)"),
    "cosine distance": (pairwise_cosine, "not cosine similarity"),
    "modifies its input in place": (pairwise_centres_in_place, "does not modify the embeddings"),
    "NumPy output": (pairwise_numpy, "return a torch tensor"),
    "torch.cdist with its rounding shortcut": (pairwise_cdist, "exactly 0 on the diagonal (7 and 40 rows)"),
    "detached output": (pairwise_detached, "without .detach()"),
    "casts to float32": (pairwise_float32, "keeps the embeddings' dtype"),
    "distances between columns": (pairwise_columns, "a (D, D) result compares the columns"),
}


# --------------------------------------------------------------------------- batch_hard_triplet_loss

def _masks(labels):
    same = labels[:, None] == labels[None, :]
    positives = same & ~torch.eye(len(labels), dtype=torch.bool)
    return same, positives, ~same


def _hardest(distances, positives, negatives, positive="farthest", negative="nearest"):
    if positive == "farthest":
        d_ap = distances.masked_fill(~positives, float("-inf")).amax(dim=1)
    else:
        d_ap = distances.masked_fill(~positives, float("inf")).amin(dim=1)
    if negative == "nearest":
        d_an = distances.masked_fill(~negatives, float("inf")).amin(dim=1)
    else:
        d_an = distances.masked_fill(~negatives, float("-inf")).amax(dim=1)
    return d_ap, d_an


def _batch_hard(embeddings, labels, margin, *, distances=None, positive="farthest", negative="nearest",
                reduce="mean", hinge=True, sign=1.0):
    distances = pairwise_distances(embeddings) if distances is None else distances
    _, positives, negatives = _masks(labels)
    d_ap, d_an = _hardest(distances, positives, negatives, positive, negative)
    valid = positives.any(dim=1) & negatives.any(dim=1)
    term = d_ap - d_an + sign * margin
    term = torch.relu(term) if hinge else term
    return term[valid].mean() if reduce == "mean" else term[valid].sum()


def loss_weighted_mean(embeddings, labels, margin):
    """Another correct answer: multiply by the masks (distances are >= 0) and divide by the valid count."""
    distances = pairwise_distances(embeddings)
    _, positives, negatives = _masks(labels)
    d_ap = (distances * positives).amax(dim=1)
    d_an = torch.where(negatives, distances, distances.max() + 1).amin(dim=1)
    valid = (positives.any(dim=1) & negatives.any(dim=1)).float()
    return (torch.relu(d_ap - d_an + margin) * valid).sum() / valid.sum()


def loss_loop(embeddings, labels, margin):
    """Another correct answer: a loop over the anchors with the learner's own distances."""
    distances = pairwise_distances(embeddings)
    terms = []
    for a in range(len(labels)):
        pos = [distances[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [distances[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        if pos and neg:
            terms.append(torch.relu(torch.stack(pos).max() - torch.stack(neg).min() + margin))
    return torch.stack(terms).mean()


LOSS_CORRECT = {"masks multiplied, weighted mean": loss_weighted_mean, "loop over anchors": loss_loop}


def loss_stub(embeddings, labels, margin):
    loss = None
    return loss


LOSS_STUBS = {"None placeholder": None, "stub function": loss_stub}


def loss_nearest_positive(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin, positive="nearest")


def loss_farthest_negative(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin, negative="farthest")


def loss_self_positive(embeddings, labels, margin):
    """The anchor counts as its own positive: an anchor alone in its class is kept, with d(a, p) = 0."""
    distances = pairwise_distances(embeddings)
    same = labels[:, None] == labels[None, :]
    d_ap = distances.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = distances.masked_fill(same, float("inf")).amin(dim=1)
    valid = same.any(dim=1) & (~same).any(dim=1)
    return torch.relu(d_ap - d_an + margin)[valid].mean()


def loss_no_valid_filter(embeddings, labels, margin):
    """Masks multiplied, but every anchor averaged in: one without a positive gets d(a, p) = 0."""
    distances = pairwise_distances(embeddings)
    _, positives, negatives = _masks(labels)
    d_ap = (distances * positives).amax(dim=1)
    d_an = distances.masked_fill(~negatives, float("inf")).amin(dim=1)
    return torch.relu(d_ap - d_an + margin).mean()


def loss_mean_over_all(embeddings, labels, margin):
    """Zero for the invalid anchors, but divided by all of them."""
    distances = pairwise_distances(embeddings)
    _, positives, negatives = _masks(labels)
    d_ap, d_an = _hardest(distances, positives, negatives)
    valid = positives.any(dim=1) & negatives.any(dim=1)
    return torch.where(valid, torch.relu(d_ap - d_an + margin), torch.zeros_like(d_ap)).sum() / len(labels)


def loss_sum(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin, reduce="sum")


def loss_no_hinge(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin, hinge=False)


def loss_margin_subtracted(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin, sign=-1.0)


def loss_squared(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin, distances=_differences_squared(embeddings))


def loss_item(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin).item()


def loss_per_anchor(embeddings, labels, margin):
    distances = pairwise_distances(embeddings)
    _, positives, negatives = _masks(labels)
    d_ap, d_an = _hardest(distances, positives, negatives)
    return torch.relu(d_ap - d_an + margin)[positives.any(dim=1)]


def loss_plain_sqrt(embeddings, labels, margin):
    return _batch_hard(embeddings, labels, margin, distances=_differences_squared(embeddings).sqrt())


def loss_labels_without_column(embeddings, labels, margin):
    """`labels == labels[None, :]` instead of `labels[:, None] == labels[None, :]`: a (1, B) mask, all True."""
    distances = pairwise_distances(embeddings)
    same = labels == labels[None, :]
    positives = same & ~torch.eye(len(labels), dtype=torch.bool)
    d_ap, d_an = _hardest(distances, positives, ~same)
    valid = positives.any(dim=1) & (~same).any(dim=1)
    return torch.relu(d_ap - d_an + margin)[valid].mean()


def loss_masks_multiplied(embeddings, labels, margin):
    """Masks by multiplication for both: the nearest negative is then one of the zeros the mask left."""
    distances = pairwise_distances(embeddings)
    _, positives, negatives = _masks(labels)
    d_ap = (distances * positives).amax(dim=1)
    d_an = (distances * negatives).amin(dim=1)
    valid = positives.any(dim=1) & negatives.any(dim=1)
    return torch.relu(d_ap - d_an + margin)[valid].mean()


def loss_active_anchors_only(embeddings, labels, margin):
    """The mean over the anchors whose loss is not 0 yet (as some papers report the loss)."""
    distances = pairwise_distances(embeddings)
    _, positives, negatives = _masks(labels)
    d_ap, d_an = _hardest(distances, positives, negatives)
    valid = positives.any(dim=1) & negatives.any(dim=1)
    terms = torch.relu(d_ap - d_an + margin)[valid]
    return terms[terms > 0].mean()


def loss_normalises_first(embeddings, labels, margin):
    return _batch_hard(F.normalize(embeddings, dim=1), labels, margin)


def loss_semi_hard(embeddings, labels, margin):
    """Semi-hard mining (the kit's other loss) in place of batch-hard."""
    return semi_hard_triplet_loss(embeddings, labels, margin, normalize=False)


def loss_normalises_in_place(embeddings, labels, margin):
    embeddings /= embeddings.norm(dim=1, keepdim=True)  # changes the caller's tensor
    return _batch_hard(embeddings, labels, margin)


LOSS_MUTANTS = {
    "nearest positive": (loss_nearest_positive, "not the nearest"),
    "farthest negative": (loss_farthest_negative, "not the farthest"),
    "anchor as its own positive": (loss_self_positive, "an anchor is not its own positive"),
    "anchors without a positive averaged in": (loss_no_valid_filter, "leave out the anchors without"),
    "mean over every anchor": (loss_mean_over_all, "not over all the anchors"),
    "sum instead of mean": (loss_sum, "don't sum"),
    "no hinge": (loss_no_hinge, "apply the hinge"),
    "margin subtracted": (loss_margin_subtracted, "the margin is added"),
    "squared distances": (loss_squared, "not squared distances"),
    "returns a Python number": (loss_item, "not a Python number"),
    "one loss per anchor": (loss_per_anchor, "return one number"),
    "plain sqrt distances (NaN gradients)": (loss_plain_sqrt, "the gradient of sqrt at 0 is infinite"),
    "labels compared without [:, None]": (loss_labels_without_column, "labels[:, None] == labels[None, :]"),
    "masks multiplied (zeros win the minimum)": (loss_masks_multiplied, "the minimum picks them"),
    "mean over the active anchors only": (loss_active_anchors_only, "dividing by the active"),
    "normalises the embeddings first": (loss_normalises_first, "don't L2-normalise them first"),
    "semi-hard instead of batch-hard": (loss_semi_hard, "that is semi-hard mining"),
    "normalises its input in place": (loss_normalises_in_place, "does not modify its inputs"),
}


# --------------------------------------------------------------------------- recall_at_k


def recall_numpy_argsort(embeddings, labels, k):
    """Another correct answer: NumPy, a stable argsort, the query's own distance set to inf."""
    x, y = embeddings.detach().numpy().astype(np.float64), labels.numpy()
    distances = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :min(k, len(y) - 1)]
    return float((y[nearest] == y[:, None]).any(axis=1).mean())


def recall_kit_knn(embeddings, labels, k):
    """Another correct answer: the kit's leave-one-out knn (it clips k itself)."""
    from helper_utils import knn

    nearest, _ = knn(embeddings, embeddings, k=k, exclude_self=True)
    y = labels.numpy()
    return float((y[nearest] == y[:, None]).any(axis=1).mean())


RECALL_CORRECT = {"NumPy argsort": recall_numpy_argsort, "the kit's knn": recall_kit_knn}


def recall_stub(embeddings, labels, k):
    recall = None
    return recall


RECALL_STUBS = {"None placeholder": None, "stub function": recall_stub}


def _recall(distances, labels, k, *, largest=False, precision=False, clip=True):
    k = min(k, len(labels) - 1) if clip else k
    nearest = distances.topk(k, dim=1, largest=largest).indices
    same = labels[nearest] == labels[:, None]
    return (same.float().mean(dim=1) if precision else same.any(dim=1).float()).mean().item()


def _without_self(embeddings):
    return pairwise_distances(embeddings).fill_diagonal_(float("inf"))


def recall_includes_self(embeddings, labels, k):
    return _recall(pairwise_distances(embeddings), labels, k)


def recall_drops_first_column(embeddings, labels, k):
    """Assumes the query is always first in its own sorted row: not so when a duplicate ties with it."""
    order = pairwise_distances(embeddings).argsort(dim=1, stable=True)
    nearest = order[:, 1:k + 1]
    return (labels[nearest] == labels[:, None]).any(dim=1).float().mean().item()


def recall_farthest(embeddings, labels, k):
    return _recall(_without_self(embeddings).fill_diagonal_(float("-inf")), labels, k, largest=True)


def recall_precision(embeddings, labels, k):
    return _recall(_without_self(embeddings), labels, k, precision=True)


def recall_tensor(embeddings, labels, k):
    distances = _without_self(embeddings)
    nearest = distances.topk(min(k, len(labels) - 1), dim=1, largest=False).indices
    return (labels[nearest] == labels[:, None]).any(dim=1).float().mean()


def recall_cosine(embeddings, labels, k):
    unit = F.normalize(embeddings, dim=1)
    similarity = (unit @ unit.T).fill_diagonal_(float("-inf"))
    return _recall(similarity, labels, k, largest=True)


def recall_unclipped_k(embeddings, labels, k):
    return _recall(_without_self(embeddings), labels, k, clip=False)


def recall_skips_lonely_queries(embeddings, labels, k):
    """Averages over the queries whose label has another item only: a lonely query is no miss."""
    distances = _without_self(embeddings)
    nearest = distances.topk(min(k, len(labels) - 1), dim=1, largest=False).indices
    hits = (labels[nearest] == labels[:, None]).any(dim=1)
    has_other = (labels[:, None] == labels[None, :]).sum(dim=1) > 1
    return hits[has_other].float().mean().item()


def recall_labels_without_column(embeddings, labels, k):
    """`labels[nearest] == labels`: (N, k) against (N,) broadcasts at k=1 (every query meets every label)."""
    distances = _without_self(embeddings)
    nearest = distances.topk(min(k, len(labels) - 1), dim=1, largest=False).indices
    return (labels[nearest] == labels).any(dim=1).float().mean().item()


def recall_normalises_in_place(embeddings, labels, k):
    """Normalises the caller's embeddings in place (the ranking by Euclidean distance changes too)."""
    embeddings /= embeddings.norm(dim=1, keepdim=True)
    return recall_numpy_argsort(embeddings, labels, k)


RECALL_MUTANTS = {
    "the query counted as its own neighbour": (recall_includes_self, "leave the query out"),
    "drops the first sorted column (ties with a duplicate)":
        (recall_drops_first_column, "a query is not its own neighbour, even with a duplicate"),
    "top-k of the farthest": (recall_farthest, "you took the k farthest items"),
    "precision@k instead of a hit rate": (recall_precision, "precision@k"),
    "returns a tensor": (recall_tensor, "returns a Python float"),
    "cosine similarity ordering": (recall_cosine, "not cosine similarity"),
    "k not clipped to N - 1": (recall_unclipped_k, "k of N - 1 and more: all the other items"),
    "leaves out the queries whose label has no other item": (recall_skips_lonely_queries, "count it as a miss"),
    "labels compared without [:, None]": (recall_labels_without_column, "labels[:, None]"),
    "normalises its input in place": (recall_normalises_in_place, "does not modify its inputs"),
}



# --------------------------------------------------------------------------- ProjectionHead


class TutorialHead(nn.Module):
    """The answer: nn.Linear from the identity, then F.normalize."""

    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.eye_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        return F.normalize(self.linear(x), dim=1)


class HandWrittenHead(nn.Module):
    """Another correct answer: the identity copied in, the rows divided by their length by hand."""

    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.fill_(0.0)

    def forward(self, x):
        out = x @ self.linear.weight.T + self.linear.bias
        return out / out.norm(dim=1, keepdim=True)


HEAD_CORRECT = {"nn.init.eye_ + F.normalize": TutorialHead, "copied identity, divided by the norm": HandWrittenHead}


class StubHead(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear = None

    def forward(self, x):
        return None


HEAD_STUBS = {"None placeholder": None, "stub class": StubHead}


class NoNormalisationHead(TutorialHead):
    def forward(self, x):
        return self.linear(x)


class ReluHead(TutorialHead):
    def forward(self, x):
        return F.normalize(torch.relu(self.linear(x)), dim=1)


class RandomWeightHead(TutorialHead):
    """nn.Linear's own random weight, the bias zeroed."""

    def __init__(self, dim):
        super().__init__(dim)
        self.linear = nn.Linear(dim, dim)
        nn.init.zeros_(self.linear.bias)


class RandomBiasHead(TutorialHead):
    """The identity weight, but nn.Linear's own random bias."""

    def __init__(self, dim):
        super().__init__(dim)
        self.linear = nn.Linear(dim, dim)
        nn.init.eye_(self.linear.weight)


class ColumnsHead(TutorialHead):
    def forward(self, x):
        return F.normalize(self.linear(x), dim=0)


class InputNormalisedHead(TutorialHead):
    def forward(self, x):
        return self.linear(F.normalize(x, dim=1))


class HardCodedHead(TutorialHead):
    def __init__(self, dim):
        super().__init__(64)


class InPlaceHead(TutorialHead):
    """Normalises the caller's tensor in place before the map (and the output after it)."""

    def forward(self, x):
        x /= x.norm(dim=1, keepdim=True)
        return F.normalize(self.linear(x), dim=1)


class NoBiasHead(TutorialHead):
    def __init__(self, dim):
        super().__init__(dim)
        self.linear = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.linear.weight)


class DetachedHead(TutorialHead):
    def forward(self, x):
        with torch.no_grad():
            return F.normalize(self.linear(x), dim=1)


class TransposedHead(TutorialHead):
    def forward(self, x):
        return F.normalize(x @ self.linear.weight + self.linear.bias, dim=1)


HEAD_MUTANTS = {
    "no normalisation": (NoNormalisationHead, "normalise the output"),
    "a ReLU": (ReluHead, "no activation"),
    "random weights": (RandomWeightHead, "start the weight as the identity"),
    "a random bias": (RandomBiasHead, "start the bias at zero"),
    "columns normalised": (ColumnsHead, "not each column"),
    "the input normalised instead of the output": (InputNormalisedHead, "not its input"),
    "the dimension hard-coded": (HardCodedHead, "not a fixed number like 64"),
    "the input changed in place": (InPlaceHead, "don't modify the inputs in place"),
    "no bias": (NoBiasHead, "keep nn.Linear's bias"),
    "output computed under no_grad": (DetachedHead, "don't detach the output"),
    "weight transposed": (TransposedHead, "transposed matrix"),
}
