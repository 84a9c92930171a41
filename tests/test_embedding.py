"""The projection head of notebook 05's recipe, and rebuilding a saved encoder with or without it."""

import pytest
import torch

from helper_utils.embedding import ProjectedEncoder, embedding_dim, encoder_for
from helper_utils.recipes import SiameseRecipe
from helper_utils.reference import MobileNetBackbone, SiameseEncoder


def _seeded_encoder() -> SiameseEncoder:
    torch.manual_seed(0)
    return SiameseEncoder(MobileNetBackbone()).eval()


def test_the_head_starts_as_the_identity_so_search_starts_where_the_backbone_is():
    encoder = _seeded_encoder()
    projected = ProjectedEncoder(encoder).eval()
    x = torch.randn(4, 3, 64, 64)
    pooled = encoder(x)
    expected = pooled / pooled.norm(dim=1, keepdim=True)
    assert torch.allclose(projected(x), expected, atol=1e-6)


def test_the_output_has_unit_length_and_can_leave_the_positive_orthant():
    projected = ProjectedEncoder(_seeded_encoder()).eval()
    with torch.no_grad():
        projected.projection.weight.neg_()  # a linear map (no ReLU) can point anywhere
        out = projected(torch.randn(4, 3, 64, 64))
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-6)
    assert (out < 0).any()


def test_gradients_reach_the_head_and_the_backbone():
    projected = ProjectedEncoder(_seeded_encoder()).train()
    projected(torch.randn(4, 3, 64, 64)).sum().backward()
    assert projected.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in projected.encoder.backbone.parameters())


def test_embedding_dim_reads_the_length_and_keeps_the_mode():
    encoder = _seeded_encoder().train()
    assert embedding_dim(encoder) == 64 and encoder.training


@pytest.mark.parametrize("head", ["linear", "none"])
def test_a_saved_encoder_is_rebuilt_with_or_without_its_head(head):
    model = SiameseRecipe(head=head).make_model(MobileNetBackbone()).eval()
    rebuilt = encoder_for(model.state_dict(), MobileNetBackbone()).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert type(rebuilt) is type(model)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(rebuilt(x), model(x), atol=1e-6)


def test_the_head_learns_faster_than_the_backbone_and_bad_heads_are_refused():
    recipe = SiameseRecipe(lr=1e-3, head_lr_factor=3.0)
    groups = recipe.make_optimizer(recipe.make_model(MobileNetBackbone())).param_groups
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(3e-3)]
    with pytest.raises(ValueError, match="head should be 'linear' or 'none'"):
        SiameseRecipe(head="mlp")


def test_weights_that_fit_neither_architecture_fail_in_load_state_dict():
    odd = {"projection.weight": 3}  # not a matrix: no projection head is built for it
    assert type(encoder_for(odd, MobileNetBackbone())) is SiameseEncoder
    with pytest.raises(RuntimeError, match="projection.weight"):
        encoder_for(odd, MobileNetBackbone()).load_state_dict(odd)
