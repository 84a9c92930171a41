"""Grad-CAM (helper_utils.going_further.explain) and its figures (show_cams, plot_embedding_map)."""

from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
import torch.nn.functional as F

from helper_utils.going_further.explain import GradCAM
from helper_utils.plotting import overlay_cam
from helper_utils.reference import grad_cam
from helper_utils.reference import MobileNetLikeClassifier
from helper_utils.plotting import plot_embedding_map, show_cams


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _classifier(seed: int = 0) -> MobileNetLikeClassifier:
    """A classifier with non-trivial BatchNorm statistics, so that train and eval mode differ."""
    torch.manual_seed(seed)
    model = MobileNetLikeClassifier(num_classes=7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _images(n: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- a model whose evidence is known

class _ColourSpots(nn.Module):
    """Class 0 = how much red, class 1 = how much green, measured on a 4x4-pixel grid.

    ``features`` turns each 4x4 patch into two channels, "red" (R - G - B) and "green" (G - R - B),
    ReLU'd; a grey background gives 0 in both. The head averages and reads channel c for class c,
    so the evidence for a class lies exactly where its colour is.
    """

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 2, kernel_size=4, stride=4, bias=False)  # 32x32 -> 8x8
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0] = torch.tensor([1.0, -1.0, -1.0])[:, None, None] / 16  # red
            conv.weight[1] = torch.tensor([-1.0, 1.0, -1.0])[:, None, None] / 16  # green
        self.features = nn.Sequential(conv, nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2, bias=False))
        with torch.no_grad():
            self.head[2].weight.copy_(torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _grey_with_squares(squares: dict[int, tuple[int, int]], size: int = 32) -> torch.Tensor:
    """A noisy grey image (1, 3, size, size) with an 8x8 square of colour c (0 red, 1 green) at each (top, left)."""
    image = 0.3 + 0.05 * torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)).expand(1, 3, -1, -1)
    image = image.clone()
    for colour, (top, left) in squares.items():
        image[0, :, top:top + 8, left:left + 8] = 0.0
        image[0, colour, top:top + 8, left:left + 8] = 1.0
    return image


def _inside(heatmap: torch.Tensor, top: int, left: int, margin: int = 0) -> torch.Tensor:
    mask = torch.zeros_like(heatmap, dtype=torch.bool)
    mask[max(top - margin, 0):top + 8 + margin, max(left - margin, 0):left + 8 + margin] = True
    return mask


@pytest.mark.parametrize("top, left", [(0, 0), (24, 24), (8, 16), (24, 0)])
def test_heatmap_lights_up_the_only_region_that_matters(top, left):
    model = _ColourSpots()
    with GradCAM(model, model.features) as cam:
        heatmap, logits = cam(_grey_with_squares({0: (top, left)}), target=0)
    heatmap = heatmap[0]  # (32, 32)
    peak = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
    assert _inside(heatmap, top, left)[peak], f"peak at {peak}, square at {(top, left)}"
    assert heatmap[_inside(heatmap, top, left)].mean() > 0.6  # bilinear upsampling softens the edges
    assert heatmap[~_inside(heatmap, top, left, margin=4)].max() == 0  # bilinear spreads 4 px at most


def test_heatmap_depends_on_the_target_class():
    model = _ColourSpots()
    image = _grey_with_squares({0: (0, 0), 1: (24, 24)})  # red top left, green bottom right
    with GradCAM(model, model.features) as cam:
        heatmaps, _ = cam(image.expand(2, -1, -1, -1), target=torch.tensor([0, 1]))
    assert heatmaps[0, :8, :8].mean() > 0.8 and heatmaps[0, 24:, 24:].max() == 0
    assert heatmaps[1, 24:, 24:].mean() > 0.8 and heatmaps[1, :8, :8].max() == 0


# --------------------------------------------------------------------------- on the course's classifier

def _oracle(model: nn.Module, layer_name: str, images: torch.Tensor, target: list[int]) -> torch.Tensor:
    """Grad-CAM one image at a time, with the weighted sum written as loops over channels and positions."""
    model = copy.deepcopy(model).eval()
    layer = model.get_submodule(layer_name)
    maps = []
    for image, c in zip(images, target):
        saved = {}
        handle = layer.register_forward_hook(lambda module, inputs, output: saved.update(a=output))
        logits = model(image[None])
        handle.remove()
        activation = saved["a"][0]  # (K, h, w)
        gradient = torch.autograd.grad(logits[0, c], saved["a"])[0][0]  # (K, h, w)
        k, h, w = activation.shape
        cam = torch.zeros(h, w)
        for i in range(h):
            for j in range(w):
                total = sum(gradient[ch].mean().item() * activation[ch, i, j].item() for ch in range(k))
                cam[i, j] = max(total, 0.0)
        cam = F.interpolate(cam[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        maps.append(cam / cam.max() if cam.max() > 0 else cam)
    return torch.stack(maps)


@pytest.mark.parametrize("layer_name", ["backbone.blocks.2", "backbone.blocks.1"])
def test_gradcam_matches_a_loop_oracle_on_the_classifier(layer_name):
    model = _classifier().train()  # GradCAM must switch to eval mode itself, as the oracle does
    images, target = _images(3), [0, 3, 6]
    with GradCAM(model, model.get_submodule(layer_name)) as cam:
        heatmaps, _ = cam(images, target)
    torch.testing.assert_close(heatmaps, _oracle(model, layer_name, images, target), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layer_name, grid", [("backbone.blocks.2", 4), ("backbone.blocks.1", 8)])
def test_heatmaps_have_the_photo_size_and_lie_in_0_1(layer_name, grid):
    model = _classifier()
    with GradCAM(model, layer_name) as cam:
        heatmaps, logits = cam(_images(4))
        assert cam.activations.shape[-2:] == (grid, grid) and cam.gradients.shape == cam.activations.shape
    assert heatmaps.shape == (4, 64, 64) and logits.shape == (4, 7)
    assert heatmaps.min() >= 0
    peaks = heatmaps.amax(dim=(1, 2))
    assert torch.all(((peaks - 1).abs() < 1e-6) | (peaks == 0))


def test_default_target_is_the_predicted_class():
    model = _classifier()
    images = _images(4)
    with GradCAM(model, model.backbone.blocks[-1]) as cam:
        default, logits = cam(images)
        predicted, _ = cam(images, logits.argmax(dim=1))
        other, _ = cam(images, (logits.argmax(dim=1) + 1) % 7)
    torch.testing.assert_close(default, predicted)
    assert not torch.allclose(default, other)


@pytest.mark.parametrize("training", [True, False])
def test_model_is_left_in_its_mode_and_batchnorm_statistics_are_untouched(training):
    model = _classifier().train(training)
    before = copy.deepcopy(model.state_dict())
    with GradCAM(model, model.backbone.blocks[-1]) as cam:
        cam(_images(2))
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_results_do_not_depend_on_the_mode_the_model_was_in():
    model = _classifier()
    with GradCAM(model.train(), model.backbone.blocks[-1]) as cam:
        from_train, _ = cam(_images(2))
    with GradCAM(model.eval(), model.backbone.blocks[-1]) as cam:
        from_eval, _ = cam(_images(2))
    torch.testing.assert_close(from_train, from_eval)  # BatchNorm used its running statistics both times


def test_no_gradient_leaks_into_the_model_or_the_images():
    model = _classifier()
    images = _images(2)
    with GradCAM(model, model.backbone.blocks[-1]) as cam:
        heatmaps, logits = cam(images)
    assert all(p.grad is None for p in model.parameters())
    assert not images.requires_grad and images.grad is None
    assert not heatmaps.requires_grad and not logits.requires_grad


def test_existing_parameter_gradients_are_left_as_they_were():
    model = _classifier()
    model(_images(2)).sum().backward()  # as in the middle of a training step
    before = [p.grad.clone() for p in model.parameters()]
    with GradCAM(model, model.backbone.blocks[-1]) as cam:
        cam(_images(2, seed=1))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before))


def test_works_inside_no_grad():
    model = _classifier()
    with torch.no_grad(), GradCAM(model, model.backbone.blocks[-1]) as cam:
        heatmaps, _ = cam(_images(2))
    assert heatmaps.amax() == 1


# --------------------------------------------------------------------------- hooks and errors

def test_hooks_are_removed_on_exit_and_close_is_idempotent():
    model = _classifier()
    layer = model.backbone.blocks[-1]
    hooks_before = len(layer._forward_hooks)
    with GradCAM(model, layer) as cam:
        assert len(layer._forward_hooks) == hooks_before + 1
        cam(_images(1))
    assert len(layer._forward_hooks) == hooks_before
    cam.close()  # a second close does nothing
    assert "closed" in repr(cam)


def test_hooks_are_removed_when_the_block_raises():
    model = _classifier()
    layer = model.backbone.blocks[-1]
    with pytest.raises(ZeroDivisionError):
        with GradCAM(model, layer):
            1 / 0
    assert len(layer._forward_hooks) == 0


def test_a_closed_gradcam_refuses_to_run():
    model = _classifier()
    cam = GradCAM(model, model.backbone.blocks[-1])
    cam.close()
    with pytest.raises(RuntimeError, match="closed"):
        cam(_images(1))


def test_layer_outside_the_model_is_refused():
    with pytest.raises(ValueError, match="submodule"):
        GradCAM(_classifier(), nn.Conv2d(3, 3, 1))


def test_layer_that_does_not_run_is_reported():
    model = _classifier()
    model.unused = nn.Conv2d(3, 3, 1)
    with GradCAM(model, model.unused) as cam, pytest.raises(RuntimeError, match="did not run"):
        cam(_images(1))


def test_layer_without_a_feature_map_is_refused():
    model = _classifier()
    with GradCAM(model, model.head) as cam, pytest.raises(ValueError, match=r"\(B, K, h, w\)"):
        cam(_images(1))


@pytest.mark.parametrize("target, message", [(7, r"\[0, 6\]"), (-1, r"\[0, 6\]"), ([0, 1, 2], "shape")])
def test_bad_targets_are_refused(target, message):
    model = _classifier()
    with GradCAM(model, model.backbone.blocks[-1]) as cam, pytest.raises(ValueError, match=message):
        cam(_images(2), target)
    assert model.training  # given back its mode even when the call failed


# --------------------------------------------------------------------------- grad_cam, the maths

def test_grad_cam_gives_zeros_not_nan_without_positive_evidence():
    activations = torch.rand(2, 3, 4, 4)
    gradients = -torch.rand(2, 3, 4, 4)  # every channel speaks against the class
    gradients[0] = -gradients[0]
    heatmaps = grad_cam(activations, gradients, (16, 16))
    assert torch.isfinite(heatmaps).all()
    assert heatmaps[1].abs().max() == 0 and heatmaps[0].max() == 1


def test_grad_cam_weights_are_spatial_means_so_their_scale_does_not_matter():
    activations, gradients = torch.rand(2, 5, 3, 5), torch.randn(2, 5, 3, 5)
    summed = gradients.sum(dim=(2, 3), keepdim=True).expand_as(gradients)  # h*w times the mean, everywhere
    torch.testing.assert_close(grad_cam(activations, gradients, (30, 50)), grad_cam(activations, summed, (30, 50)))
    assert grad_cam(activations, gradients, (30, 50)).shape == (2, 30, 50)


# --------------------------------------------------------------------------- figures

def test_overlay_blends_the_heatmap_over_the_photo():
    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    photo, cam = Image.fromarray(pixels), torch.rand(16, 16)
    np.testing.assert_allclose(overlay_cam(photo, cam, alpha=0.0), pixels / 255.0)
    blended = overlay_cam(photo, cam, alpha=0.5)
    assert blended.shape == (16, 16, 3) and 0.0 <= blended.min() and blended.max() <= 1.0
    assert not np.allclose(blended, pixels / 255.0)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1  # normalised like the model's input
    np.testing.assert_allclose(overlay_cam(tensor, cam, alpha=0.0), pixels / 255.0, atol=1e-6)


@pytest.mark.parametrize("cam, alpha, message", [(torch.rand(8, 8), 0.5, "size"), (torch.rand(16, 16), 1.5, "alpha")])
def test_overlay_refuses_bad_arguments(cam, alpha, message):
    with pytest.raises(ValueError, match=message):
        overlay_cam(torch.zeros(3, 16, 16), cam, alpha=alpha)


def test_show_cams_draws_the_photos_and_one_row_per_heatmap_set():
    images, cams = _images(3, size=16), torch.rand(3, 16, 16)
    assert len(show_cams(images, cams).axes) == 2 * 3
    fig = show_cams(images, [cams, cams], titles=["a", "b", "c"], row_titles=["4x4", "8x8"])
    assert len(fig.axes) == 3 * 3
    assert fig.axes[0].get_title() == "a" and fig.axes[3].get_ylabel() == "4x4"


def test_embedding_map_has_one_panel_per_projection_and_one_legend_entry_per_class():
    points, labels = np.random.default_rng(0).normal(size=(30, 2)), np.arange(30) % 3
    fig = plot_embedding_map({"PCA": points, "t-SNE": points[::-1]}, labels, ["a", "b", "c"])
    assert [ax.get_title() for ax in fig.axes] == ["PCA", "t-SNE"]
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["a", "b", "c"]
