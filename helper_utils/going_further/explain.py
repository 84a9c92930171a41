"""Grad-CAM: which parts of a photo made the classifier pick a class (notebook 07).

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017) looks at one convolutional layer. With ``A`` the
layer's output ``(K, h, w)`` for one photo and ``y`` the logit of a class:

1. ``alpha_k = mean over (i, j) of dy / dA[k, i, j]``: how much channel ``k`` pushes the score up;
2. ``cam = ReLU(sum_k alpha_k * A[k])``: the positions whose features speak *for* the class;
3. upsample ``cam`` to the photo's size and scale it so its maximum is 1.

``A`` and ``dy/dA`` live inside ``model.forward``: :class:`GradCAM` catches them with a forward
hook on the layer and a gradient hook on the layer's output, and removes both when closed.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

from helper_utils.reference import grad_cam  # notebook 07's answer

__all__ = ["GradCAM"]

Target = Union[None, int, Sequence[int], torch.Tensor]


class GradCAM:
    """Grad-CAM for one layer of a classifier, with hooks that are removed on :meth:`close`.

    Example::

        with GradCAM(model, model.backbone.blocks[-1]) as cam:
            heatmaps, logits = cam(images)  # (B, 64, 64) in [0, 1], (B, C)

    Each call runs the model in eval mode and gives it back its previous mode. The backward pass
    asks autograd for the gradient with respect to a detached copy of the images only, so the
    model's ``.grad`` fields are left untouched (no leak into a later optimiser step).

    Args:
        model: maps ``(B, 3, H, W)`` to logits ``(B, C)``.
        layer: a submodule of ``model`` whose output is a ``(B, K, h, w)`` tensor, or its dotted
            name (``"backbone.blocks.2"``).
        cam_fn: turns ``(activations, gradients, size)`` into heatmaps; :func:`grad_cam` by default.

    Attributes:
        activations, gradients: the layer's output and its gradient from the last call, ``(B, K, h, w)``.

    Raises:
        ValueError: ``layer`` is not a submodule of ``model``.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str,
                 cam_fn: Callable[..., torch.Tensor] = grad_cam) -> None:
        if isinstance(layer, str):
            layer = model.get_submodule(layer)
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"layer should be a submodule of the model (e.g. model.backbone.blocks[-1]), "
                             f"got a {type(layer).__name__} that the model does not contain")
        self.model, self.layer, self.cam_fn = model, layer, cam_fn
        self.activations: torch.Tensor | None = None
        self.gradients: torch.Tensor | None = None
        self._handles = [layer.register_forward_hook(self._save_activation)]

    def _save_activation(self, module: nn.Module, inputs, output) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"Grad-CAM needs a layer whose output is a (B, K, h, w) tensor, got "
                             f"{type(output).__name__} from {type(module).__name__}")
        self.activations = output.detach()
        if output.requires_grad:
            output.register_hook(self._save_gradient)  # called with d score / d output in the backward pass

    def _save_gradient(self, grad: torch.Tensor) -> None:
        self.gradients = grad.detach()

    def __call__(self, images: torch.Tensor, target: Target = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps for ``target`` (class per image, one class for all, or ``None``: the predicted class).

        Args:
            images: normalised batch ``(B, 3, H, W)`` on the model's device.
            target: ``None``, an int, or ``B`` class indices.

        Returns:
            ``(heatmaps (B, H, W) in [0, 1], logits (B, C))``, both detached.
        """
        if not self._handles:
            raise RuntimeError("this GradCAM is closed: its hooks were removed; make a new one")
        self.activations = self.gradients = None
        was_training = self.model.training
        self.model.eval()  # BatchNorm with its running statistics: images do not affect each other
        try:
            with torch.enable_grad():
                x = images.detach().requires_grad_(True)  # the gradient goes here, not into the parameters
                logits = self.model(x)  # (B, C); the forward hook saves the activations
                classes = _targets(target, logits)
                score = logits.gather(1, classes[:, None]).sum()  # each image's own class score
                torch.autograd.grad(score, x)  # the backward pass; the gradient hook saves d score / dA
        finally:
            self.model.train(was_training)
        if self.activations is None or self.gradients is None:
            raise RuntimeError(f"the layer ({type(self.layer).__name__}) did not run in the model's forward pass, "
                               f"or the score does not depend on it")
        heatmaps = self.cam_fn(self.activations, self.gradients, tuple(images.shape[-2:]))
        return heatmaps.detach(), logits.detach()

    def close(self) -> None:
        """Remove the hooks (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "GradCAM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._handles else "closed"
        return f"GradCAM(layer={type(self.layer).__name__}, {state})"


def _targets(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """Class indices ``(B,)`` on the logits' device, checked against ``B`` and ``C``."""
    batch, num_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    classes = torch.as_tensor(target, dtype=torch.long, device=logits.device)
    if classes.ndim == 0:
        classes = classes.expand(batch)
    if classes.shape != (batch,):
        raise ValueError(f"target should be None, one class index or {batch} of them, got shape "
                         f"{tuple(classes.shape)}")
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"target classes should lie in [0, {num_classes - 1}], got {classes.tolist()}")
    return classes
