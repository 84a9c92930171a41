"""Answers to notebook 07's exercise, ``grad_cam(activations, gradients, size)``.

``CORRECT`` must pass the grader; ``STUBS`` and every ``MUTANTS`` entry must fail it.
Each mutant maps to ``(function, name of a case that must fail)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _upsample(cam, size, **kwargs):
    """(B, 1, h, w) -> (B, H, W), bilinear unless told otherwise."""
    kwargs.setdefault("mode", "bilinear")
    return F.interpolate(cam, size=size, **kwargs)[:, 0]


def _by_max(cam):
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)


# --------------------------------------------------------------------------- correct answers

def cam_notebook(activations, gradients, size=(64, 64)):
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return cam / peak.clamp_min(1e-8)


def cam_summed_gradients(activations, gradients, size=(64, 64)):
    """Sum instead of mean: every weight scaled by h * w, which the normalisation cancels."""
    weights = gradients.sum(dim=(2, 3))  # (B, K)
    cam = torch.einsum("bk,bkhw->bhw", weights, activations).clamp(min=0)
    return _by_max(_upsample(cam.unsqueeze(1), size))


def cam_min_max_loop(activations, gradients, size=(64, 64)):
    """One image at a time, min-max scaling, align_corners=True: other conventions, just as correct."""
    maps = []
    for a, g in zip(activations, gradients):
        cam = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(dim=0))  # (h, w)
        cam = F.interpolate(cam[None, None], size=tuple(size), mode="bilinear", align_corners=True)[0, 0]
        span = cam.max() - cam.min()
        maps.append((cam - cam.min()) / span if span > 0 else torch.zeros_like(cam))
    return torch.stack(maps)


CORRECT = {"notebook": cam_notebook, "summed gradients, einsum": cam_summed_gradients,
           "loop, min-max, align_corners=True": cam_min_max_loop}


def cam_stub(activations, gradients, size=(64, 64)):
    weights = None
    cam = None
    cam = None
    cam = None
    return cam


STUBS = {"None placeholder": None, "stub function": cam_stub}


# --------------------------------------------------------------------------- plausible mistakes

def cam_no_relu(activations, gradients, size=(64, 64)):
    cam = (gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True)
    return _by_max(_upsample(cam, size))


def cam_no_relu_min_max(activations, gradients, size=(64, 64)):
    """Min-max scaling hides the missing ReLU's negative values, but not where they are."""
    cam = _upsample((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True), size)
    low = cam.amin(dim=(1, 2), keepdim=True)
    return (cam - low) / (cam.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-8)


def cam_relu_per_channel(activations, gradients, size=(64, 64)):
    cam = F.relu(gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True)
    return _by_max(_upsample(cam, size))


def cam_gradients_not_averaged(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients * activations).sum(dim=1, keepdim=True))
    return _by_max(_upsample(cam, size))


def cam_averaged_over_channels(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=1, keepdim=True) * activations).sum(dim=1, keepdim=True))
    return _by_max(_upsample(cam, size))


def cam_not_normalised(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    return _upsample(cam, size)


def cam_batch_max(activations, gradients, size=(64, 64)):
    cam = _upsample(F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True)), size)
    return cam / cam.max()


def cam_normalised_before_upsampling(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1))  # (B, h, w)
    cam = _by_max(cam)
    return _upsample(cam.unsqueeze(1), size)


def cam_nearest(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    return _by_max(_upsample(cam, size, mode="nearest"))


def cam_fixed_size(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    return _by_max(_upsample(cam, (64, 64)))


def cam_size_swapped(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    return _by_max(_upsample(cam, (size[1], size[0])))


def cam_not_upsampled(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1))
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)


def cam_keeps_channel_dim(activations, gradients, size=(64, 64)):
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=size, mode="bilinear")  # (B, 1, H, W)
    return cam / cam.amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)


def cam_nan_without_evidence(activations, gradients, size=(64, 64)):
    cam = _upsample(F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True)), size)
    return cam / cam.amax(dim=(1, 2), keepdim=True)


def cam_in_place(activations, gradients, size=(64, 64)):
    activations.mul_(gradients.mean(dim=(2, 3), keepdim=True))  # overwrites the saved activations
    cam = F.relu(activations.sum(dim=1, keepdim=True))
    return _by_max(_upsample(cam, size))


def cam_numpy(activations, gradients, size=(64, 64)):
    return cam_notebook(activations, gradients, size).numpy()


MUTANTS = {
    "no ReLU": (cam_no_relu, "negative evidence is cut off (ReLU)"),
    "no ReLU, min-max scaling": (cam_no_relu_min_max, "negative evidence is cut off (ReLU)"),
    "ReLU per channel": (cam_relu_per_channel, "negative evidence is cut off (ReLU)"),
    "gradients not averaged": (cam_gradients_not_averaged,
                               "channel weights are the gradients averaged over the positions"),
    "averaged over the channels": (cam_averaged_over_channels,
                                   "channel weights are the gradients averaged over the positions"),
    "not normalised": (cam_not_normalised, "values in [0, 1], each map's maximum is 1"),
    "normalised by the batch's maximum": (cam_batch_max,
                                          "each map is scaled on its own (3 images of very different scales)"),
    "normalised before upsampling": (cam_normalised_before_upsampling,
                                     "equals the reference on seeded maps (4 images, 16 channels, 4 x 4 -> 64 x 64)"),
    "nearest upsampling": (cam_nearest,
                           "equals the reference on seeded maps (4 images, 16 channels, 4 x 4 -> 64 x 64)"),
    "always 64 x 64": (cam_fixed_size, "another photo size (48 x 32) and map size (3 x 5)"),
    "size swapped": (cam_size_swapped, "another photo size (48 x 32) and map size (3 x 5)"),
    "not upsampled": (cam_not_upsampled, "returns a float tensor (B, H, W) at the photo's size"),
    "keeps the channel dimension": (cam_keeps_channel_dim, "returns a float tensor (B, H, W) at the photo's size"),
    "NaN without evidence": (cam_nan_without_evidence, "a map with no positive evidence is all 0s, not NaN"),
    "in place on the inputs": (cam_in_place, "leaves the activations and gradients unchanged"),
    "returns a NumPy array": (cam_numpy, "returns a float tensor (B, H, W) at the photo's size"),
}

# mutants whose hint must name the mistake, as the learner reads it: (mutant, words in a failing hint)
HINTS = [
    (cam_no_relu, "apply a ReLU"),
    (cam_relu_per_channel, "not to each weighted channel"),
    (cam_gradients_not_averaged, "one weight per channel"),
    (cam_averaged_over_channels, "not over the channels"),
    (cam_not_normalised, "divide each map by its maximum"),
    (cam_batch_max, "not by the maximum of the whole batch"),
    (cam_normalised_before_upsampling, "upsample first"),
    (cam_nearest, "mode='bilinear'"),
    (cam_size_swapped, "without swapping"),
    (cam_keeps_channel_dim, "drop the channel dimension"),
    (cam_nan_without_evidence, "clamp_min"),
    (cam_in_place, "in-place"),
    (cam_numpy, "no .numpy()"),
]
