"""Grader of notebook 07: ``grad_cam(activations, gradients, size)``.

The answer turns a layer's activations ``A`` and the gradients ``dy/dA`` (both ``(B, K, h, w)``)
into heatmaps ``(B, H, W)``: channel weights = gradients averaged over the positions, ReLU of
the weighted sum of the maps, bilinear upsampling to ``size``, each map divided by its maximum.
Dividing by ``max - min`` instead (min-max scaling) and ``align_corners=True`` are accepted too.
Each case feeds hand-made maps on which a plausible mistake gives a visibly different heatmap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from helper_utils.going_further.explain import grad_cam as _reference
from unittests._checks import _call, _describe
from unittests.framework import Case, check, fail, grade, require_answer

__all__ = ["test_grad_cam"]

_ATOL = 1e-4


# --------------------------------------------------------------------------- oracle and its wrong twins

def _cam(activations: torch.Tensor, gradients: torch.Tensor, size, *, align_corners: bool = False,
         minmax: bool = False, relu: str = "sum", weights: str = "mean", normalise: str = "map",
         mode: str = "bilinear", normalise_first: bool = False) -> torch.Tensor:
    """Grad-CAM written out, with switches that reproduce the plausible mistakes (for the hints)."""
    if weights == "mean":
        weighted = gradients.mean(dim=(2, 3), keepdim=True) * activations  # (B, K, h, w)
    elif weights == "elementwise":
        weighted = gradients * activations
    else:  # "channels": averaged over the wrong axis
        weighted = gradients.mean(dim=1, keepdim=True) * activations
    if relu == "channels":
        weighted = F.relu(weighted)
    cam = weighted.sum(dim=1, keepdim=True)  # (B, 1, h, w)
    if relu in ("sum", "channels"):
        cam = F.relu(cam)
    if normalise_first:
        cam = _normalise(cam[:, 0], normalise, minmax)[:, None]
    extra = {} if mode == "nearest" else {"align_corners": align_corners}
    cam = F.interpolate(cam, size=tuple(size), mode=mode, **extra)[:, 0]  # (B, H, W)
    return cam if normalise_first else _normalise(cam, normalise, minmax)


def _normalise(cam: torch.Tensor, how: str, minmax: bool) -> torch.Tensor:
    if how == "none":
        return cam
    dims = (0, 1, 2) if how == "batch" else (1, 2)
    low = cam.amin(dim=dims, keepdim=True) if minmax else torch.zeros(1)
    span = cam.amax(dim=dims, keepdim=True) - low
    return (cam - low) / torch.where(span > 0, span, torch.ones_like(span))


def _accepted(activations, gradients, size) -> list[torch.Tensor]:
    """The reference and the conventions that are just as correct."""
    return [_reference(activations, gradients, size)] + [
        _cam(activations, gradients, size, align_corners=corners, minmax=minmax)
        for corners in (False, True) for minmax in (False, True) if corners or minmax]


_MISTAKES = [  # (switches of _cam, hint)
    ({"relu": "none"}, "apply a ReLU to the weighted sum: positions with negative evidence must become 0"),
    ({"relu": "channels"}, "apply the ReLU once, to the sum over the channels, not to each weighted channel"),
    ({"weights": "elementwise"}, "average the gradients over the h x w positions first (mean over dim=(2, 3)): "
                                 "one weight per channel, not one per position"),
    ({"weights": "channels"}, "average the gradients over the positions (dim=(2, 3)), not over the channels"),
    ({"normalise": "none"}, "divide each map by its maximum, so that the heatmap lies in [0, 1]"),
    ({"normalise": "batch"}, "divide each map by its own maximum, not by the maximum of the whole batch"),
    ({"normalise_first": True}, "upsample first, then divide by the maximum: the upsampled map's maximum must be 1"),
    ({"mode": "nearest"}, "upsample with F.interpolate(..., mode='bilinear'), not nearest"),
]


def _diagnose(out: torch.Tensor, activations, gradients, size, default: str) -> str:
    for switches, hint in _MISTAKES:
        for minmax in (False, True):
            wrong = _cam(activations, gradients, size, minmax=minmax, **switches)
            if wrong.shape == out.shape and torch.allclose(out, wrong, atol=_ATOL):
                return hint
    return default


# --------------------------------------------------------------------------- checks

def _run(grad_cam, activations, gradients, size) -> Any:
    return _call(grad_cam, activations.clone(), gradients.clone(), size, what="grad_cam(activations, gradients, size)",
                 hint="grad_cam raised this error; the shapes in the comments of the exercise cell help")


def _as_tensor(out: Any, want: torch.Tensor) -> torch.Tensor:
    """The answer as a float tensor of the expected shape, or a failed case saying what is off."""
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        hint = ("grad_cam returns None: replace every None placeholder and return the heatmaps" if out is None
                else "return the heatmaps as one tensor (B, H, W)")
        fail(f"a tensor of shape {list(want.shape)}", _describe(out), hint)
    check(tuple(out.shape) == tuple(want.shape), expected=list(want.shape), got=list(out.shape),
          hint=_shape_hint(tuple(out.shape), tuple(want.shape)))
    return out.detach().float().cpu()


def _shape_hint(got: tuple, want: tuple) -> str:
    batch, height, width = want
    if got == (batch, 1, height, width):
        return "drop the channel dimension after upsampling: [:, 0] (or squeeze(1)) gives (B, H, W)"
    if got == (batch, width, height):
        return "size is (H, W): pass it to F.interpolate as it is, without swapping"
    if len(got) == 3 and got[1:] != (height, width):
        return "upsample to the `size` argument with F.interpolate(cam, size=size, mode='bilinear')"
    if len(got) == 4 and got[1] != 1:
        return "sum the weighted activation maps over the channels (dim=1)"
    return "return one heatmap per image: (B, H, W)"


def _compare(grad_cam, activations, gradients, size, default_hint: str) -> torch.Tensor:
    want = _reference(activations, gradients, size)
    out = _as_tensor(_run(grad_cam, activations, gradients, size), want)
    if any(torch.allclose(out, ok, atol=_ATOL) for ok in _accepted(activations, gradients, size)):
        return out
    if not torch.isfinite(out).all():
        fail("finite values", "NaN or inf", "a map with no positive evidence has maximum 0: divide by the maximum "
                                            "only where it is above 0 (e.g. peak.clamp_min(1e-8))")
    fail("the Grad-CAM heatmaps", f"max abs difference {(out - want).abs().max().item():.3g}",
         _diagnose(out, activations, gradients, size, default_hint))


def _seeded_maps(batch: int = 4, channels: int = 16, height: int = 4, width: int = 4, seed: int = 0):
    """Non-negative activations (they follow a ReLU in a real network) and signed gradients."""
    g = torch.Generator().manual_seed(seed)
    activations = F.relu(torch.randn(batch, channels, height, width, generator=g))
    gradients = 0.1 * torch.randn(batch, channels, height, width, generator=g)
    return activations, gradients


def _case_runs(grad_cam):
    _run(grad_cam, *_seeded_maps(), (64, 64))


def _case_type(grad_cam):
    activations, gradients = _seeded_maps()
    out = _run(grad_cam, activations, gradients, (64, 64))
    if isinstance(out, np.ndarray):
        fail("a torch.Tensor", "a NumPy array", "return a tensor: keep to torch operations (no .numpy())")
    _as_tensor(out, torch.zeros(4, 64, 64))
    check(out.is_floating_point(), expected="a float tensor", got=str(out.dtype),
          hint="the heatmap holds values between 0 and 1, not class indices")


def _case_range(grad_cam):
    activations, gradients = _seeded_maps()
    out = _as_tensor(_run(grad_cam, activations, gradients, (64, 64)), torch.zeros(4, 64, 64))
    peaks = out.amax(dim=(1, 2))
    in_range = bool(out.min() >= -1e-6) and bool((peaks <= 1 + 1e-5).all())
    check(in_range and torch.allclose(peaks, torch.ones_like(peaks), atol=1e-4),
          expected="values in [0, 1] and a maximum of 1 in every map",
          got=f"values in [{out.min().item():.3g}, {out.max().item():.3g}], maxima {[round(p, 3) for p in peaks.tolist()]}",
          hint=_diagnose(out, activations, gradients, (64, 64),
                         "apply a ReLU, upsample, then divide each map by its own maximum"))


def _case_relu():
    """Channel 0 speaks for the class on columns 0-2, channel 1 against it on columns 2-3: they cancel on column 2."""
    activations = torch.zeros(1, 2, 4, 4)
    activations[0, 0, :, :3] = 1.0
    activations[0, 1, :, 2:] = 1.0
    gradients = torch.zeros(1, 2, 4, 4)
    gradients[0, 0], gradients[0, 1] = 1.0, -1.0  # weights +1 and -1: evidence 1, 1, 0, -1 across the columns
    return activations, gradients


def _case_weights():
    """A weight is the *mean* gradient: channel 0's gradient sits on one spot, but its mean is small."""
    activations = torch.zeros(1, 2, 4, 4)
    activations[0, 0] = 1.0  # everywhere
    activations[0, 1, 1, 1] = 2.0  # one spot, top left
    gradients = torch.zeros(1, 2, 4, 4)
    gradients[0, 0, 3, 3] = 8.0  # mean 0.5; used position by position it would light up the bottom right
    gradients[0, 1] = 1.0
    return activations, gradients


def _case_per_map(grad_cam):
    activations, gradients = _seeded_maps(batch=3, seed=1)
    activations = activations * torch.tensor([1.0, 0.01, 100.0]).view(3, 1, 1, 1)  # very different scales
    _compare(grad_cam, activations, gradients, (64, 64), "divide each map by its own maximum")


def _case_no_evidence(grad_cam):
    activations, gradients = _seeded_maps(batch=2, seed=2)
    gradients[1] = -gradients[1].abs()  # image 1: every channel weighs against the class
    _compare(grad_cam, activations, gradients, (64, 64),
             "image 1 has no positive evidence: after the ReLU its map is all 0s, and must stay so")


def _case_inputs_unchanged(grad_cam):
    activations, gradients = _seeded_maps(batch=2, seed=3)
    a, g = activations.clone(), gradients.clone()
    _call(grad_cam, a, g, (64, 64), what="grad_cam(activations, gradients, size)", hint="grad_cam raised this error")
    changed = [name for name, before, after in (("activations", activations, a), ("gradients", gradients, g))
               if not torch.equal(before, after)]
    check(not changed, expected="activations and gradients unchanged", got=f"{' and '.join(changed)} modified",
          hint="don't use in-place operations (relu_, mul_, +=, ...) on the inputs: they are the layer's saved tensors")


def test_grad_cam(grad_cam):
    """Grade ``grad_cam(activations, gradients, size=(64, 64)) -> (B, H, W)`` heatmaps in ``[0, 1]``."""
    fn = grad_cam
    cases = [
        Case("grad_cam is defined",
             lambda: require_answer(fn, "grad_cam", lambda f: f(*_seeded_maps(), (64, 64)) is None), required=True),
        Case("runs on (B, K, h, w) activations and gradients", lambda: _case_runs(fn), required=True),
        Case("returns a float tensor (B, H, W) at the photo's size", lambda: _case_type(fn), required=True),
        Case("values in [0, 1], each map's maximum is 1", lambda: _case_range(fn)),
        Case("negative evidence is cut off (ReLU)",
             lambda: _compare(fn, *_case_relu(), (16, 16), "apply a ReLU to the weighted sum over the channels")),
        Case("channel weights are the gradients averaged over the positions",
             lambda: _compare(fn, *_case_weights(), (16, 16), "weights = gradients.mean(dim=(2, 3), keepdim=True)")),
        Case("each map is scaled on its own (3 images of very different scales)", lambda: _case_per_map(fn)),
        Case("another photo size (48 x 32) and map size (3 x 5)",
             lambda: _compare(fn, *_seeded_maps(2, 8, 3, 5, seed=4), (48, 32),
                              "upsample to the `size` argument, (H, W), not to a fixed 64 x 64")),
        Case("a map with no positive evidence is all 0s, not NaN", lambda: _case_no_evidence(fn)),
        Case("equals the reference on seeded maps (4 images, 16 channels, 4 x 4 -> 64 x 64)",
             lambda: _compare(fn, *_seeded_maps(), (64, 64),
                              "follow the four steps: mean gradients, ReLU of the weighted sum, bilinear "
                              "upsampling, divide by the maximum")),
        Case("leaves the activations and gradients unchanged", lambda: _case_inputs_unchanged(fn)),
    ]
    return grade("test_grad_cam", cases)
