"""Answers to notebook 05's exercises, ``SiameseEncoder`` and ``SiameseNetwork``: correct, stubs, wrong.

``*_CORRECT`` must pass their grader; ``*_STUBS`` and every ``*_MUTANTS`` entry must fail it.
Each mutant maps to ``(class, name of a case that must fail)``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from helper_utils.reference import MobileNetBackbone

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
