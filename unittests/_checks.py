"""Checks shared by the graders of notebooks 01-03: safe calls into learner code, shapes,
parameter counts, weight copying between a learner's module and the reference."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from unittests.framework import check, fail

def _describe(value: Any) -> str:
    """A short, safe description of a learner's value (never calls the learner's __repr__)."""
    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {list(value.shape)}, dtype {value.dtype}"
    return f"a {type(value).__name__}"


def _out(n: int, stride: int) -> int:
    """Output size of a 3x3/padding-1 or 1x1 convolution: ceil(n / stride)."""
    return (n - 1) // stride + 1


def _call(fn: Callable, *args: Any, what: str, hint: str | Callable[[Exception], str]) -> Any:
    """Call learner code; turn an exception into a failed check with a specific hint."""
    try:
        return fn(*args)
    except Exception as err:  # learner code may raise anything
        if callable(hint):
            text = hint(err)
        elif "NoneType" in str(err):
            text = "something is still None: replace every None placeholder in the exercise cell, then re-run it"
        else:
            text = hint
        fail(f"{what} to run", f"{type(err).__name__}: {err}", text)


def _tensor(value: Any, what: str, hint: str = "") -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        if value is None:
            hint = (f"{what} returned None: replace the None placeholders left in it (every `= None` line of the "
                    f"exercise), and make sure it returns its result")
        fail(f"{what} to return a tensor", _describe(value), hint)
    return value


def _shape(value: Any, expected: Sequence[int], what: str, hint: str) -> torch.Tensor:
    out = _tensor(value, what)
    check(tuple(out.shape) == tuple(expected), expected=list(expected), got=list(out.shape), hint=hint)
    return out


def _module(value: Any, name: str, hint: str) -> nn.Module:
    check(isinstance(value, nn.Module), expected=f"`{name}` to be an nn.Module", got=_describe(value), hint=hint)
    return value


def _init_hint(err: Exception, signature: str) -> str:
    text = str(err)
    if "before Module.__init__()" in text:
        return "call super().__init__() as the first line of __init__"
    if isinstance(err, TypeError) and ("argument" in text or "positional" in text):
        return f"the signature should be {signature}"
    return "__init__ raised this error; read its message and fix the exercise cell"


def _count(module: nn.Module) -> int:
    """Trainable parameters, not counting convolution biases (redundant before BatchNorm; either way is fine)."""
    total = 0
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            if p.requires_grad and not (isinstance(m, nn.modules.conv._ConvNd) and name == "bias"):
                total += p.numel()
    return total


def _leaves(module: nn.Module) -> list[nn.Module]:
    """Modules that hold parameters or buffers themselves, in registration order."""
    return [m for m in module.modules()
            if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))]


def _pairs(src: nn.Module, dst: nn.Module) -> list[tuple[nn.Module, nn.Module]] | None:
    """src's and dst's convolution/BatchNorm/Linear layers side by side, or None when they do not line up."""
    kinds = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.Linear)
    src_leaves, dst_leaves = _leaves(src), _leaves(dst)
    if len(src_leaves) != len(dst_leaves):
        return None
    for s, d in zip(src_leaves, dst_leaves):
        kind = next((k for k in kinds if isinstance(s, k)), None)
        if kind is None or not isinstance(d, kind):
            return None
        if getattr(d, "weight", None) is None or d.weight.shape != s.weight.shape:
            return None
        if kind is kinds[1] and (d.running_mean is None or d.running_mean.shape != s.running_mean.shape):
            return None
    return list(zip(src_leaves, dst_leaves))


def _copy_pairs(pairs: list[tuple[nn.Module, nn.Module]]) -> None:
    with torch.no_grad():
        for s, d in pairs:
            d.weight.copy_(s.weight)
            if getattr(d, "bias", None) is not None:
                d.bias.copy_(s.bias if s.bias is not None else torch.zeros_like(d.bias))
            if isinstance(s, nn.modules.batchnorm._BatchNorm):
                d.running_mean.copy_(s.running_mean)
                d.running_var.copy_(s.running_var)


def _copy_leaves(src: nn.Module, dst: nn.Module) -> bool:
    """Copy src's weights into dst when both line up layer by layer (a learner's conv bias is set to 0).

    Returns False and copies nothing when the layers do not line up: then the two
    implementations are too different to compare weight for weight, which is no error.
    """
    pairs = _pairs(src, dst)
    if pairs is not None:
        _copy_pairs(pairs)
    return pairs is not None


def _copy_weights(src: nn.Module, dst: nn.Module, stages: Sequence[str]) -> bool:
    """Like ``_copy_leaves``, stage by stage (whatever order the learner registered the stages in)."""
    pairs = []
    for name in stages:
        s, d = getattr(src, name, None), getattr(dst, name, None)
        if s is None and d is None:
            continue
        found = _pairs(s, d) if s is not None and isinstance(d, nn.Module) else None
        if found is None:
            return False
        pairs += found
    _copy_pairs(pairs)
    return True


def _randomize(module: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (seeded by the case)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and m.track_running_stats:
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return module


def _gradient_case(build: Callable[[], nn.Module], shape: Sequence[int], what: str, hint: str) -> None:
    model = build()
    model.train()
    out = _tensor(_call(model, torch.randn(*shape), what=what, hint=hint), what)
    check(out.requires_grad, expected="an output that depends on the parameters", got="an output without grad_fn",
          hint="forward must not run under torch.no_grad() nor .detach() its result")
    (out * torch.randn_like(out)).sum().backward()
    dead = [name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0)]
    check(not dead, expected="a gradient for every parameter", got=f"none for {', '.join(dead[:4])}"
          + (" ..." if len(dead) > 4 else ""), hint=hint)


# ----------------------------------------------------------------------------------------
# test_block
# ----------------------------------------------------------------------------------------

