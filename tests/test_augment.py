"""BatchAugment: shapes, ranges, seeding, and each stage against what it should do."""

import pytest
import torch

from helper_utils.augment import BatchAugment, normalize_batch
from helper_utils.recipes import MEDIUM_AUGMENT

OFF = dict(flip=0.0, zoom=(1.0, 1.0), aspect=0.0, degrees=0.0, translate=0.0, brightness=0.0, contrast=0.0,
           saturation=0.0, erase=0.0)


def _batch(n=6, size=16, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_normalize_batch_maps_uint8_to_minus_one_one():
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    assert torch.allclose(normalize_batch(x).flatten(), torch.tensor([-1.0, 1.0, -0.6]))


def test_everything_off_is_plain_normalisation():
    x = _batch()
    assert torch.allclose(BatchAugment(**OFF)(x), normalize_batch(x), atol=1e-5)


def test_flip_always_mirrors():
    x = _batch()
    assert torch.allclose(BatchAugment(**{**OFF, "flip": 1.0})(x), normalize_batch(x).flip(-1), atol=1e-5)


def test_eval_mode_only_normalises():
    x = _batch()
    augment = BatchAugment(**MEDIUM_AUGMENT).eval()
    assert torch.equal(augment(x), normalize_batch(x))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_recipe_augment_keeps_shape_and_range(dtype):
    x = _batch(8, 64)
    x = x if dtype == torch.uint8 else x.float() / 255
    out = BatchAugment(**MEDIUM_AUGMENT, seed=0)(x)
    assert out.shape == (8, 3, 64, 64) and out.dtype == torch.float32
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5


def test_seeded_runs_repeat_and_draws_differ():
    x = _batch(8, 32)
    a, b = BatchAugment(**MEDIUM_AUGMENT, seed=3), BatchAugment(**MEDIUM_AUGMENT, seed=3)
    first = a(x)
    assert torch.equal(first, b(x))
    assert not torch.equal(first, a(x))  # the next batch gets new random draws


def test_erase_fills_a_rectangle_with_zero():
    x = torch.full((4, 3, 32, 32), 255, dtype=torch.uint8)
    out = BatchAugment(**{**OFF, "erase": 1.0}, erase_area=(0.1, 0.1), seed=0)(x)
    erased = (out == 0).all(dim=1)  # (4, 32, 32)
    for mask in erased:
        rows, cols = mask.any(dim=1).sum().item(), mask.any(dim=0).sum().item()
        assert 0 < mask.sum().item() == rows * cols  # one solid rectangle


def test_colour_jitter_keeps_a_grey_image_grey():
    x = torch.full((4, 3, 8, 8), 100, dtype=torch.uint8)
    out = BatchAugment(**{**OFF, "brightness": 0.3, "contrast": 0.3, "saturation": 0.3}, seed=0)(x)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)


def test_rejects_a_single_image():
    with pytest.raises(ValueError, match="batch"):
        BatchAugment()(torch.zeros(3, 8, 8))
