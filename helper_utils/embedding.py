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

__all__ = ["ProjectedEncoder", "embedding_dim", "encoder_for"]


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
