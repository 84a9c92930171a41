"""The projection head that turns the siamese encoder's pooled features into a search embedding.

Notebook 05's ``SiameseEncoder`` ends with global average pooling of ReLU outputs: every number
of its embedding is >= 0, so all embeddings sit in one orthant of the sphere, where two
directions are at most a right angle apart. The triplet loss can then only rearrange photos by
changing the backbone's features. A linear layer without an activation can rotate and rescale
the embedding and use the whole sphere. Initialised to the identity, it starts exactly where
the encoder is, so training begins from the backbone's own search quality.
"""

from __future__ import annotations

import torch
from torch import nn

from helper_utils.reference import SiameseEncoder
from helper_utils.retrieval import l2_normalize

__all__ = ["ProjectedEncoder", "HeadedEncoder", "embedding_dim", "encoder_for"]


class ProjectedEncoder(nn.Module):
    """An encoder, then ``nn.Linear(dim, dim)`` (identity at the start), then L2 normalisation.

    ``(B, 3, 64, 64) -> (B, dim)``, every row of length 1: the output is the search embedding,
    ready for Euclidean (equivalently cosine) nearest neighbours.
    """

    def __init__(self, encoder: nn.Module, dim: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = nn.Linear(dim, dim)
        nn.init.eye_(self.projection.weight)  # at first, the projection changes nothing
        nn.init.zeros_(self.projection.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)  # (B, dim), non-negative
        return l2_normalize(self.projection(features))  # (B, dim), on the whole unit sphere


class HeadedEncoder(nn.Module):
    """An encoder, then a head module of its own, such as notebook 05's ``ProjectionHead``: ``(B, 3, 64, 64) -> (B, dim)``.

    The head is the learner's: it has a ``linear`` attribute (an ``nn.Linear(dim, dim)``) and
    computes ``linear(x)`` with each row L2-normalised. :meth:`to_projected` turns the pair into
    the :class:`ProjectedEncoder` that checkpoint files hold, so later notebooks can load it
    without the learner's class.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # (B, dim)

    @property
    def projection(self) -> nn.Linear:
        """The head's linear map: what learns at the head's learning rate."""
        return self.head.linear

    @torch.no_grad()
    def head_is_linear_then_normalize(self) -> bool:
        """Whether the head computes ``l2_normalize(head.linear(x))`` (checked on random rows), as a file can store it."""
        linear = getattr(self.head, "linear", None)
        if not isinstance(linear, nn.Linear) or linear.in_features != linear.out_features:
            return False
        x = torch.randn(8, linear.in_features, generator=torch.Generator().manual_seed(0))
        x = x.to(linear.weight.device, linear.weight.dtype)
        got = self.head(x.clone())
        return got.shape == x.shape and torch.allclose(got, l2_normalize(linear(x)), atol=1e-5)

    def to_projected(self) -> ProjectedEncoder:
        """The same encoder as a :class:`ProjectedEncoder` (shares the encoder; copies the head's weights)."""
        linear = self.head.linear
        projected = ProjectedEncoder(self.encoder, dim=linear.in_features).to(linear.weight.device)
        projected.projection.load_state_dict(linear.state_dict())
        return projected


@torch.no_grad()
def embedding_dim(encoder: nn.Module, image_size: int = 64) -> int:
    """Length of ``encoder``'s embedding, from one blank photo (the encoder's mode is left as it was)."""
    was_training = encoder.training
    parameter = next(encoder.parameters())
    dim = encoder.eval()(torch.zeros(1, 3, image_size, image_size, device=parameter.device)).shape[1]
    encoder.train(was_training)
    return int(dim)


def encoder_for(state_dict: dict, backbone: nn.Module) -> nn.Module:
    """The module, with fresh weights, that a saved encoder's ``state_dict`` belongs to.

    A state dict with a 2-D ``projection.weight`` was saved from a :class:`ProjectedEncoder`;
    any other (an encoder of an older kit, or a recipe with ``head="none"``) from a plain
    ``SiameseEncoder``. Loading weights that fit neither is left to ``load_state_dict``, which
    says what does not fit (:func:`helper_utils.checkpoints.load_encoder` turns that into a reason).
    """
    projection = state_dict.get("projection.weight")
    if isinstance(projection, torch.Tensor) and projection.ndim == 2:
        return ProjectedEncoder(SiameseEncoder(backbone), dim=projection.shape[0])
    return SiameseEncoder(backbone)
