"""Graders of notebook 01: ``train_transform``, ``val_transform`` and ``compute_class_weights``.

The transforms are checked on small synthetic PIL images: output type and shape for several
input sizes, the normalisation (solid colours have known outputs), determinism and no
augmentation in validation, randomness, a left-right flip and a rotation in training. The class
weights are checked for proportionality to ``1 / count`` (any positive scale is correct) and
for weight 0 on a class with no images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from unittests._checks import _call, _describe
from unittests.framework import Case, check, fail, grade, placeholder, require_answer, require_callable

__all__ = ["test_transforms", "test_class_weights"]

_SIZE = 64
_SIZES = [(300, 200), (64, 64), (50, 80), (97, 31)]  # PIL (width, height): landscape, square, portrait, odd
_NORMALIZE = "transforms.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))"
_TO_TENSOR = "transforms.ToTensor() (or v2.ToImage() + v2.ToDtype(torch.float32, scale=True))"
_IMAGENET_MEAN, _IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _solid(rgb: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def _pattern(size: tuple[int, int] = (_SIZE, _SIZE)) -> Image.Image:
    """An asymmetric RGB image: any flip, rotation or crop changes it (seeded by the case)."""
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = np.stack([xs, ys, xs * ys], axis=-1) * 180 + np.random.randint(0, 60, size=(h, w, 3))
    return Image.fromarray(base.clip(0, 255).astype(np.uint8), mode="RGB")


def _expected(img: Image.Image) -> torch.Tensor:
    """ToTensor + Normalize(0.5, 0.5), computed without torchvision."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy((arr.transpose(2, 0, 1) - 0.5) / 0.5)


def _apply(transform: Any, img: Image.Image, name: str) -> torch.Tensor:
    """Run a learner's transform and check it returns a float tensor [3, 64, 64], with a hint for each mistake."""
    out = _call(transform, img.copy(), what=f"{name}(a {img.size[0]}x{img.size[1]} PIL image)",
                hint=f"{name} should take a PIL image: Resize((64, 64)) first, then {_TO_TENSOR}, then Normalize")
    where = f"{name} on a {img.size[0]}x{img.size[1]} (width x height) image"
    if isinstance(out, Image.Image):
        fail(f"{where}: a float tensor", "a PIL image", f"ToTensor missing: add {_TO_TENSOR} before Normalize")
    if isinstance(out, np.ndarray):
        fail(f"{where}: a float tensor", "a numpy array", f"return a torch tensor: use {_TO_TENSOR}")
    if not isinstance(out, torch.Tensor):
        fail(f"{where}: a float tensor", _describe(out), f"{name} should end with {_TO_TENSOR} and Normalize")
    if not out.is_floating_point():
        fail(f"{where}: a float tensor", f"dtype {out.dtype}",
             "convert to float in [0, 1] before normalising: ToTensor(), or v2.ToDtype(torch.float32, scale=True)")
    shape = tuple(out.shape)
    if shape != (3, _SIZE, _SIZE):
        w, h = img.size
        if shape == (3, h, w):
            hint = "no resize: add transforms.Resize((64, 64))"
        elif len(shape) == 3 and _SIZE in shape[1:] and w != h:
            hint = "Resize(64) only sets the shorter side on non-square images: use Resize((64, 64)) with a tuple"
        elif len(shape) == 4 and shape[0] == 1:
            hint = "return one image [3, 64, 64], not a batch of one: no unsqueeze in the transform"
        elif len(shape) == 3 and shape[0] != 3:
            hint = "channels first, 3 of them: ToTensor gives [3, H, W] (keep the image RGB)"
        else:
            hint = "resize to exactly 64x64: transforms.Resize((64, 64))"
        fail(f"{where}: shape [3, 64, 64]", list(shape), hint)
    return out


def _normalise_hint(got: torch.Tensor, pixel01: np.ndarray) -> str:
    """Name the mistake from the values solid colours ``pixel01`` (in [0, 1], 3 per colour) turned into."""
    value = got.mean(dim=(1, 2)).double().numpy()
    mean, std = np.resize(_IMAGENET_MEAN, value.shape), np.resize(_IMAGENET_STD, value.shape)
    if np.allclose(value, pixel01, atol=0.02):
        return f"missing Normalize: values are still in [0, 1]; add {_NORMALIZE} after ToTensor"
    if np.allclose(value, pixel01 * 255, atol=2):
        return f"values are in [0, 255]: scale to [0, 1] first with {_TO_TENSOR}"
    if np.allclose(value, (pixel01 - mean) / std, atol=0.05):
        return f"those are ImageNet's mean and std: this course uses {_NORMALIZE}"
    if np.allclose(value, pixel01.reshape(-1, 3)[:, ::-1].reshape(-1) * 2 - 1, atol=0.02):
        return "the colour channels are reversed: keep the image RGB"
    return f"normalise with {_NORMALIZE}: a pixel value p in [0, 1] becomes (p - 0.5) / 0.5"


def _case_val_shapes(val_transform: Any) -> None:
    for size in _SIZES:
        _apply(val_transform, _pattern(size), "val_transform")


def _case_train_shapes(train_transform: Any) -> None:
    for size in _SIZES:
        for _ in range(2):
            _apply(train_transform, _pattern(size), "train_transform")


def _case_val_normalise(val_transform: Any) -> None:
    colours = ((0, 0, 0), (255, 255, 255), (200, 100, 30))
    # The centre only: augmentation has its own cases.
    outs = [_apply(val_transform, _solid(rgb), "val_transform")[:, 16:48, 16:48] for rgb in colours]
    pixels = np.array(colours) / 255.0
    for rgb, out, pixel in zip(colours, outs, pixels):
        expected = torch.tensor((pixel - 0.5) / 0.5, dtype=out.dtype).view(3, 1, 1).expand_as(out)
        if (out - expected).abs().max().item() >= 0.02:
            fail(f"a solid {rgb} image -> {[round(v, 3) for v in expected[:, 0, 0].tolist()]} everywhere",
                 f"channel means {[round(v, 3) for v in out.mean(dim=(1, 2)).tolist()]}",
                 _normalise_hint(torch.cat(outs, dim=0), pixels.reshape(-1)))


def _case_train_normalise(train_transform: Any) -> None:
    # Flips, rotations, crops and most colour jitter keep a black image black, at least in its centre.
    black = _apply(train_transform, _solid((0, 0, 0)), "train_transform")[:, 24:40, 24:40]
    white = _apply(train_transform, _solid((255, 255, 255)), "train_transform")[:, 24:40, 24:40]
    hint = _normalise_hint(torch.cat([black, white]), np.array([0.0] * 3 + [1.0] * 3)) + " (in train_transform too)"
    check((black + 1).abs().max() < 0.02, expected="a black image -> -1 (at least in the centre)",
          got=f"centre values {black.min().item():.3f} .. {black.max().item():.3f}", hint=hint)
    for _ in range(4):
        out = _apply(train_transform, _pattern((90, 70)), "train_transform")
        low, high = out.min().item(), out.max().item()
        check(low >= -1.02 and high <= 1.02, expected="values in [-1, 1]", got=f"{low:.3f} .. {high:.3f}", hint=hint)


def _case_val_deterministic(val_transform: Any) -> None:
    img = _pattern((90, 70))
    outs = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        np.random.seed(seed)
        outs.append(_apply(val_transform, img, "val_transform"))
    check(all(torch.equal(outs[0], o) for o in outs[1:]), expected="the same tensor every time",
          got="different tensors for the same image",
          hint="augmentation in val_transform: random flips/rotations/crops belong in train_transform only")


def _case_val_no_augmentation(val_transform: Any) -> None:
    img = _pattern()
    out = _apply(val_transform, img, "val_transform")
    expected = _expected(img)
    diff = (out - expected).abs().max().item()
    if diff < 1e-4:
        return
    if out.min() < -1.05 or out.max() > 1.05 or out.min() > -0.5:
        hint = "the values are not normalised as expected: see the normalisation case"
    elif (out - expected.flip(-1)).abs().max() < 1e-4:
        hint = "augmentation in val_transform: the image came back flipped; flips belong in train_transform only"
    else:
        hint = ("val_transform should only Resize((64, 64)), ToTensor and Normalize: augmentation (flips, rotations, "
                "crops, colour changes) belongs in train_transform only")
    fail("a 64x64 image -> ToTensor + Normalize of it, unchanged otherwise", f"max difference {diff:.3g}", hint)


def _case_train_random(train_transform: Any) -> None:
    img = _pattern((80, 72))
    outs = [_apply(train_transform, img, "train_transform") for _ in range(8)]
    distinct = len({o.numpy().tobytes() for o in outs})
    check(distinct > 1, expected="different tensors for the same image over 8 calls", got="the same tensor every time",
          hint="train_transform should augment, e.g. transforms.RandomHorizontalFlip() and "
               "transforms.RandomRotation(10), before ToTensor")


_DRAWS = 16  # a flip with p=0.5 shows both ways, and a rotation of up to 10 degrees shows, in 16 draws


def _case_train_flips_and_rotates(train_transform: Any) -> None:
    # A horizontal flip reverses channel 0's left-to-right gradient of the pattern image.
    flips = set()
    for _ in range(_DRAWS):
        out = _apply(train_transform, _pattern(), "train_transform")
        left, right = out[0, :, :_SIZE // 2].mean().item(), out[0, :, _SIZE // 2:].mean().item()
        flips.add(left > right)
    check(len(flips) == 2, expected=f"some of {_DRAWS} outputs flipped left-right, some not",
          got="always flipped" if flips == {True} else "never flipped",
          hint="add transforms.RandomHorizontalFlip() (p=0.5) to train_transform, before ToTensor")
    # A rotation of a white image fills its corners (black by default, or 0 after Normalize): darker than the centre.
    rotated = 0
    for _ in range(_DRAWS):
        out = _apply(train_transform, _solid((255, 255, 255), (_SIZE, _SIZE)), "train_transform")
        corners = torch.stack([out[:, :3, :3], out[:, :3, -3:], out[:, -3:, :3], out[:, -3:, -3:]]).mean()
        rotated += bool(corners < out[:, 24:40, 24:40].mean() - 0.5)
    check(rotated > 0, expected=f"some of {_DRAWS} outputs of a white image rotated (corners filled)",
          got="corners never filled: no rotation",
          hint="add transforms.RandomRotation(10) to train_transform, before ToTensor")


def test_transforms(train_transform, val_transform):
    """Grade notebook 01's ``train_transform`` and ``val_transform`` (pass the transform objects)."""
    tr, va = train_transform, val_transform

    def _defined() -> None:
        if tr is None and va is None:
            placeholder("train_transform` and `val_transform")
        require_callable(tr, "train_transform")
        require_callable(va, "val_transform")

    return grade("test_transforms", [
        Case("train_transform and val_transform are defined", _defined, required=True),
        Case("val_transform: float tensor [3, 64, 64] from any image size", lambda: _case_val_shapes(va)),
        Case("train_transform: float tensor [3, 64, 64] from any image size", lambda: _case_train_shapes(tr)),
        Case("val_transform normalises with mean 0.5, std 0.5", lambda: _case_val_normalise(va)),
        Case("train_transform normalises to [-1, 1] too", lambda: _case_train_normalise(tr)),
        Case("val_transform is deterministic", lambda: _case_val_deterministic(va)),
        Case("val_transform does not augment", lambda: _case_val_no_augmentation(va)),
        Case("train_transform is random (augments)", lambda: _case_train_random(tr)),
        Case("train_transform flips left-right and rotates", lambda: _case_train_flips_and_rotates(tr)),
    ])


# ----------------------------------------------------------------------------------------
# test_class_weights
# ----------------------------------------------------------------------------------------

_CW_SIGNATURE = "compute_class_weights(targets, num_classes)"


def _weights(fn: Any, targets: Any, num_classes: int) -> torch.Tensor:
    """Call the learner's function and check it returns a float tensor of length num_classes."""
    labels = [int(t) for t in targets]
    kind = {torch.Tensor: "tensor ", tuple: "tuple "}.get(type(targets), "")
    what = f"compute_class_weights({kind}{labels if len(labels) <= 12 else f'<{len(labels)} labels>'}, {num_classes})"

    def hint(err: Exception) -> str:
        if isinstance(err, ZeroDivisionError) and isinstance(targets, torch.Tensor):
            return ("with a tensor of targets each element is a 0-d tensor, not an int (a Counter or dict keyed "
                    "by them finds no ints): convert first, e.g. torch.as_tensor(list(targets)) or targets.tolist()")
        if isinstance(err, ZeroDivisionError) or "division by zero" in str(err):
            return ("a class with no samples has count 0: give it weight 0 instead of dividing by zero, "
                    "e.g. torch.bincount(targets, minlength=num_classes) and divide only where count > 0")
        if isinstance(err, TypeError) and ("argument" in str(err) or "positional" in str(err)):
            return f"the signature should be {_CW_SIGNATURE}"
        return "targets may be a list or a tensor of int labels: torch.as_tensor(targets) handles both"

    mine = targets.clone() if isinstance(targets, torch.Tensor) else type(targets)(targets)  # theirs to modify
    out = _call(fn, mine, num_classes, what=what, hint=hint)
    if isinstance(out, (np.ndarray, list, tuple)):
        fail(f"{what}: a float tensor", "a numpy array" if isinstance(out, np.ndarray) else f"a {type(out).__name__}",
             "return a torch tensor, e.g. torch.tensor(weights, dtype=torch.float32): "
             "CrossEntropyLoss(weight=...) needs one")
    if not isinstance(out, torch.Tensor):
        fail(f"{what}: a float tensor", _describe(out),
             "compute_class_weights returned None: replace the None placeholders (`counts = None`, "
             "`weights = None`) with your code" if out is None
             else "return a float tensor of length num_classes")
    if not out.is_floating_point():
        fail(f"{what}: a float tensor", f"dtype {out.dtype}",
             "integer weights: use float division (total / count with float counts), or .float()")
    if out.dim() != 1 or out.numel() != num_classes:
        hint = ("length equals number of classes present: use torch.bincount(targets, minlength=num_classes)"
                if out.numel() == len(set(labels)) else "one weight per class: a 1-D tensor of length num_classes")
        fail(f"{what}: shape [{num_classes}]", list(out.shape), hint)
    return out.detach().double()


def _proportional_hint(w: torch.Tensor, counts: torch.Tensor) -> str:
    w, counts = w.double(), counts.double()
    if torch.allclose(w, counts):
        return "those are the class counts: the weight is total / count (inverse frequency)"
    if torch.allclose(w / w.sum(), counts / counts.sum(), rtol=1e-3):
        return "count/total is the frequency, not the inverse: use total / count so rare classes weigh more"
    if torch.allclose(w, w[0].expand_as(w)):
        return "all weights are equal: the weight of class c is total / count[c]"
    if (w <= 0).any():
        return "weights must be positive: total / count"
    return "weight[c] should be proportional to 1 / count[c] (e.g. total / count[c])"


def _check_inverse(w: torch.Tensor, counts: torch.Tensor, what: str) -> None:
    present = counts > 0
    wp, cp = w[present], counts[present].double()
    finite = torch.isfinite(wp).all() and (wp > 0).all()
    scaled = wp * cp  # constant when w is proportional to 1 / count
    ok = bool(finite) and torch.allclose(scaled, scaled[0].expand_as(scaled), rtol=1e-3)
    check(ok, expected=f"{what}: weights proportional to 1/count, counts {counts.tolist()}",
          got=[round(v, 4) for v in w.tolist()],
          hint=_proportional_hint(wp, cp) if finite else "weights must be positive and finite for classes that occur")


def _targets(counts: list[int]) -> list[int]:
    targets = [c for c, n in enumerate(counts) for _ in range(n)]
    return [targets[i] for i in np.random.permutation(len(targets))]


def _case_cw_type(fn: Any) -> None:
    _weights(fn, [0, 0, 0, 1, 1, 2], 3)


def _case_cw_inverse(fn: Any) -> None:
    for counts in ([5, 1, 3, 2], [3, 3, 3], [400, 120, 310, 95, 250, 60, 180]):
        w = _weights(fn, _targets(counts), len(counts))
        _check_inverse(w, torch.tensor(counts), f"{len(counts)} classes")


def _case_cw_rare(fn: Any) -> None:
    counts = [50, 2, 20, 8]
    w = _weights(fn, _targets(counts), len(counts))
    order = sorted(range(len(counts)), key=lambda c: -float(w[c]))
    check(order[0] == 1 and order[-1] == 0, expected="the rarest class (1) weighs most, the most frequent (0) least",
          got=f"weights {[round(v, 4) for v in w.tolist()]} for counts {counts}",
          hint="inverse frequency: weight = total / count, so rare classes get larger weights")


def _case_cw_inputs(fn: Any) -> None:
    counts = [4, 2, 6]
    targets = _targets(counts)
    from_list = _weights(fn, targets, 3)
    for other, kind in ((torch.tensor(targets), "a tensor"), (tuple(targets), "a tuple")):
        w = _weights(fn, other, 3)
        check(torch.allclose(w, from_list, rtol=1e-5), expected=f"the same weights for {kind} of targets as for a list",
              got=[round(v, 4) for v in w.tolist()],
              hint="convert the targets first, e.g. torch.as_tensor(list(targets)), then count with torch.bincount")


def _case_cw_absent(fn: Any) -> None:
    counts = [3, 1, 2, 0, 0]  # classes 3 and 4 never occur: num_classes is larger than the largest label
    w = _weights(fn, _targets(counts), len(counts))
    _check_inverse(w, torch.tensor(counts), "with 2 classes absent")
    absent = w[torch.tensor(counts) == 0]
    check(bool((absent == 0).all()), expected="weight 0 for the absent classes 3 and 4",
          got=[round(v, 4) for v in w.tolist()],
          hint="give a class with no images weight 0 (not inf or NaN from 1/0): divide only where count > 0, "
               "e.g. torch.where(counts > 0, total / counts, torch.zeros_like(counts))")


def test_class_weights(compute_class_weights):
    """Grade notebook 01's ``compute_class_weights(targets, num_classes)`` (pass the function)."""
    fn = compute_class_weights
    return grade("test_class_weights", [
        Case("compute_class_weights is defined",
             lambda: require_answer(fn, "compute_class_weights", lambda f: f([0, 0, 1], 2) is None), required=True),
        Case("returns a float tensor of length num_classes", lambda: _case_cw_type(fn), required=True),
        Case("weights proportional to 1 / count", lambda: _case_cw_inverse(fn)),
        Case("rare classes get larger weights", lambda: _case_cw_rare(fn)),
        Case("accepts a list, a tuple or a tensor of targets", lambda: _case_cw_inputs(fn)),
        Case("num_classes larger than the largest label", lambda: _case_cw_absent(fn)),
    ])
