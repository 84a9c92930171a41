"""Batched data augmentation for the fast training recipe: one call per batch, on any device.

The per-image ``train_transform`` of notebook 01 runs on PIL images one at a time, which costs
more than the model itself on a laptop CPU. ``BatchAugment`` does the same kind of work on a
whole ``(B, 3, H, W)`` batch with a handful of tensor operations, so images can be cached once
as a uint8 tensor and augmented on the fly:

* geometry: one random affine per image (horizontal flip, zoom, aspect ratio, rotation and
  translation) applied with a single ``affine_grid`` + ``grid_sample``;
* colour: brightness, contrast and saturation jitter;
* random erasing: one rectangle per image filled with the mean colour (0 after normalising).

The output is normalised like ``val_transform`` (mean 0.5, std 0.5: ``x / 127.5 - 1`` for
uint8 input), so ``normalize_batch`` is all that evaluation needs.

The defaults are the augmentation of the kit's fast recipe, tuned on the 7-class clothing data
at 64x64: lighter geometry, no colour jitter or no erasing each lost validation accuracy, and
stronger settings lost some too (the recipe's measured results are on the results page,
docs/results/README.md). Augmenting whole uint8 batches at once, rather than one PIL image at a
time, keeps it a small share of a CPU training step (``make bench-pipeline`` times it).
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["BatchAugment", "normalize_batch"]

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in ``[0, 255]`` -> float in ``[0, 1]``; a float batch is assumed in ``[0, 1]`` already."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def normalize_batch(x: torch.Tensor) -> torch.Tensor:
    """Evaluation path: ``(B, 3, H, W)`` uint8 (or float in ``[0, 1]``) -> float in ``[-1, 1]``, no randomness."""
    return _to_unit_float(x).sub(0.5).div(0.5)


class BatchAugment(nn.Module):
    """Random augmentation of a whole image batch, returning a normalised float batch.

    Args:
        flip: probability of a horizontal flip.
        zoom: range of the zoom factor; above 1 zooms in (a crop), below 1 zooms out
            (the border pixels are repeated, see ``padding_mode``). ``(1, 1)`` disables it.
        aspect: maximum log aspect-ratio change: width and height scale differ by up to
            ``exp(+-aspect)``.
        degrees: maximum rotation, in degrees, either way.
        translate: maximum shift as a fraction of the image size, in x and y independently.
        brightness, contrast, saturation: jitter strength; the factor is drawn from
            ``[1 - s, 1 + s]`` (0 disables the jitter). Applied in that order as one colour
            matrix, clamped to ``[0, 1]`` once at the end (torchvision clamps after each step).
        erase: probability of erasing one rectangle per image.
        erase_area: range of the erased area as a fraction of the image.
        padding_mode: how ``grid_sample`` fills pixels from outside the image
            (``"border"``, ``"reflection"`` or ``"zeros"``).
        seed: if given, a private ``torch.Generator`` with this seed draws all random
            numbers, so two runs with the same seed augment identically.

    Input: ``(B, 3, H, W)`` uint8 in ``[0, 255]`` or float in ``[0, 1]``, on any device.
    Output: float ``(B, 3, H, W)`` normalised with mean 0.5 and std 0.5 (``[-1, 1]``).
    In ``eval()`` mode the module only normalises.

    Example::

        augment = BatchAugment(seed=0)             # the recipe's settings
        for idx in torch.randperm(len(images)).split(64):
            logits = model(augment(images[idx]))   # images: uint8 (N, 3, 64, 64)
    """

    def __init__(
        self,
        flip: float = 0.5,
        zoom: tuple[float, float] = (0.9, 1.25),
        aspect: float = 0.15,
        degrees: float = 10.0,
        translate: float = 0.1,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        erase: float = 0.25,
        erase_area: tuple[float, float] = (0.02, 0.2),
        padding_mode: str = "border",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.flip = float(flip)
        self.zoom = (float(zoom[0]), float(zoom[1]))
        self.aspect = float(aspect)
        self.degrees = float(degrees)
        self.translate = float(translate)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.erase = float(erase)
        self.erase_area = (float(erase_area[0]), float(erase_area[1]))
        self.padding_mode = padding_mode
        self.seed = seed
        self._generator: torch.Generator | None = None

    # --- random numbers -------------------------------------------------------------
    def _gen(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None  # the global RNG, seeded by torch.manual_seed
        if self._generator is None or self._generator.device.type != device.type:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator

    @staticmethod
    def _uniform(n: int, low: float, high: float, g, device) -> torch.Tensor:
        return torch.rand(n, generator=g, device=device) * (high - low) + low

    # --- the three stages -----------------------------------------------------------
    def _geometry(self, x: torch.Tensor, g) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        needs = self.flip > 0 or self.zoom != (1.0, 1.0) or self.aspect > 0 or self.degrees > 0 or self.translate > 0
        if not needs:
            return x
        zoom = torch.exp(self._uniform(n, math.log(self.zoom[0]), math.log(self.zoom[1]), g, dev))
        ratio = torch.exp(self._uniform(n, -self.aspect, self.aspect, g, dev))
        sx = zoom * ratio.sqrt()  # output-to-input scale is 1/s: s > 1 shows a smaller region, bigger
        sy = zoom / ratio.sqrt()
        angle = self._uniform(n, -self.degrees, self.degrees, g, dev) * (math.pi / 180.0)
        flip = torch.where(torch.rand(n, generator=g, device=dev) < self.flip, -1.0, 1.0)
        # affine_grid uses coordinates in [-1, 1], so a shift of a fraction t of the image is 2t
        tx = self._uniform(n, -self.translate, self.translate, g, dev) * 2.0
        ty = self._uniform(n, -self.translate, self.translate, g, dev) * 2.0
        cos, sin = torch.cos(angle), torch.sin(angle)
        # theta maps output pixel coordinates to input coordinates: rotate(scale^-1 * flip * p) + t
        theta = torch.stack([
            torch.stack([cos * flip / sx, -sin / sy, tx], dim=1),
            torch.stack([sin * flip / sx, cos / sy, ty], dim=1),
        ], dim=1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)

    def _colour(self, x: torch.Tensor, g) -> torch.Tensor:
        # Brightness, contrast and saturation are all linear in the pixels, so together they are
        # one 3x3 colour matrix plus an offset per image: a single batched matmul.
        n, c, h, w = x.shape
        dev = x.device
        if self.brightness <= 0 and self.contrast <= 0 and self.saturation <= 0:
            return x
        gray_w = torch.tensor(_GRAY, device=dev, dtype=x.dtype)  # sums to 1
        b = self._uniform(n, 1 - self.brightness, 1 + self.brightness, g, dev)
        k = self._uniform(n, 1 - self.contrast, 1 + self.contrast, g, dev)
        s = self._uniform(n, 1 - self.saturation, 1 + self.saturation, g, dev)
        # saturation: x -> s*x + (1 - s) * gray(x), i.e. the matrix s*I + (1 - s) * 1 w^T
        eye = torch.eye(3, device=dev, dtype=x.dtype)
        sat = s.view(n, 1, 1) * eye + (1 - s).view(n, 1, 1) * gray_w.view(1, 1, 3)
        # brightness x -> b*x, then contrast x -> k*x + (1 - k) * mean gray; saturation keeps a
        # uniform offset unchanged (the rows of its matrix sum to 1)
        matrix = (k * b).view(n, 1, 1) * sat
        mean_gray = (x.mean((2, 3)) @ gray_w)  # (n,)
        offset = ((1 - k) * b * mean_gray).view(n, 1, 1)
        out = torch.baddbmm(offset, matrix, x.reshape(n, c, h * w))
        return out.view(n, c, h, w).clamp_(0.0, 1.0)

    def _erase(self, x: torch.Tensor, g) -> torch.Tensor:
        if self.erase <= 0:
            return x
        n, _, h, w = x.shape
        dev = x.device
        area = self._uniform(n, self.erase_area[0], self.erase_area[1], g, dev) * (h * w)
        log_ratio = self._uniform(n, math.log(0.3), math.log(1 / 0.3), g, dev)
        eh = (area * log_ratio.exp()).sqrt().clamp(1, h)
        ew = (area / log_ratio.exp()).sqrt().clamp(1, w)
        top = torch.rand(n, generator=g, device=dev) * (h - eh)
        left = torch.rand(n, generator=g, device=dev) * (w - ew)
        on = torch.rand(n, generator=g, device=dev) < self.erase
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        inside = (
            (rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1))
            & on.view(n, 1, 1)
        )
        return x.masked_fill(inside.unsqueeze(1), 0.0)  # 0 is the mean colour after normalising

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        if not self.training:
            return normalize_batch(x)
        g = self._gen(x.device)
        x = _to_unit_float(x)
        x = self._geometry(x, g)
        x = self._colour(x, g)
        x = x.mul(2.0).sub_(1.0)  # [0, 1] -> [-1, 1]: mean 0.5, std 0.5
        return self._erase(x, g)

    def extra_repr(self) -> str:
        return (
            f"flip={self.flip}, zoom={self.zoom}, aspect={self.aspect}, degrees={self.degrees}, "
            f"translate={self.translate}, brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, erase={self.erase}, erase_area={self.erase_area}, "
            f"padding_mode={self.padding_mode!r}, seed={self.seed}"
        )
