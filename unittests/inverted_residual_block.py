"""Grader of notebook 02: ``InvertedResidualBlock``.

Every case checks behaviour on seeded inputs: output shapes, what each stage does (expand
widens, depthwise keeps channels apart, project is linear), the skip path, the final ReLU,
gradients and the parameter count against the reference in ``helper_utils.reference``.
Convolution biases are not counted, so a block written with ``bias=True`` passes too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from helper_utils.reference import InvertedResidualBlock as _RefBlock
from unittests._checks import (
    _describe,
    _out,
    _call,
    _tensor,
    _shape,
    _module,
    _init_hint,
    _count,
    _copy_weights,
    _randomize,
    _gradient_case,
)
from unittests.framework import Case, check, fail, grade, is_stub_instance, require_answer

__all__ = ["test_block"]

# in, out, stride, expansion factor, input height, input width
_CONFIGS = [
    (16, 16, 1, 6, 8, 8),  # same shape: identity skip, no shortcut
    (16, 24, 2, 3, 8, 8),  # the backbone's first block
    (24, 32, 2, 3, 7, 9),  # odd, non-square input: 7x9 -> 4x5
    (8, 12, 1, 2, 5, 6),  # channels change at stride 1: shortcut
    (12, 12, 2, 2, 6, 6),  # stride 2 with the same channels: shortcut
]
_IDENTITY, _SHORTCUT = _CONFIGS[0], _CONFIGS[2]
_SIGNATURE = "InvertedResidualBlock(in_channels, out_channels, stride=1, expansion_factor=6)"
_FORWARD = "relu(project(depthwise(expand(x))) + skip), with skip = x if shortcut is None else shortcut(x)"
_STAGES = ("expand", "depthwise", "project", "shortcut")
_STAGE_HINTS = {
    "expand": "expand: 1x1 Conv2d(in_channels, in_channels*expansion_factor), BatchNorm2d, ReLU",
    "depthwise": "depthwise: 3x3 Conv2d(hidden, hidden, stride=stride, padding=1, groups=hidden), BatchNorm2d, ReLU",
    "project": "project: 1x1 Conv2d(hidden, out_channels), BatchNorm2d, no activation",
    "shortcut": "shortcut: 1x1 Conv2d(in_channels, out_channels, stride=stride) + BatchNorm2d "
                "when stride != 1 or in_channels != out_channels, else None",
}


def _build(Block: Any, cin: int, cout: int, stride: int, e: int) -> nn.Module:
    try:
        block = Block(cin, cout, stride=stride, expansion_factor=e)
    except Exception as err:
        fail(f"{_SIGNATURE} to build ({cin}, {cout}, stride={stride}, expansion_factor={e})",
             f"{type(err).__name__}: {err}", _init_hint(err, _SIGNATURE))
    return _module(block, "InvertedResidualBlock(...)",
                   "InvertedResidualBlock must be a class that subclasses nn.Module")


def _forward_hint(err: Exception) -> str:
    text = str(err)
    if "NoneType" in text:
        return "something is still None: replace every None placeholder in the exercise cell"
    if "must match the size" in text or "size of tensor" in text:
        return ("the skip and the branch have different shapes: a shortcut is needed when stride != 1 "
                "or channels differ, and its 1x1 conv needs the block's stride")
    if "channels" in text or "shape" in text or "size" in text:
        return ("a layer gets a tensor of the wrong shape: check in/out channels of each conv "
                "(hidden = in_channels*expansion_factor)")
    return "forward raised this error; read its message"


def _case_build(Block: Any) -> None:
    for cin, cout, s, e, _, _ in _CONFIGS:
        _build(Block, cin, cout, s, e)
    for args in ((16, 24, 2, 3), (8, 8)):  # positional arguments, then the defaults
        try:
            Block(*args)
        except Exception as err:
            fail(f"InvertedResidualBlock{args} to build", f"{type(err).__name__}: {err}",
                 f"the signature should be {_SIGNATURE}")


def _case_stages(Block: Any) -> None:
    for cin, cout, s, e, _, _ in _CONFIGS:
        block = _build(Block, cin, cout, s, e)
        for name in _STAGES:
            if not hasattr(block, name):
                fail(f"an attribute `{name}`", "no such attribute",
                     f"name the stages self.expand, self.depthwise, self.project and self.shortcut: "
                     f"graders and later notebooks use these names")
        for name in _STAGES[:3]:
            value = getattr(block, name)
            if value is None:
                fail(f"`{name}` to be a module", "None", f"self.{name} is still None: build it. {_STAGE_HINTS[name]}")
            _module(value, name, _STAGE_HINTS[name])


_ADDS = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__, torch.Tensor.__radd__,
         torch.Tensor.__iadd__}


class _AddOperands(TorchFunctionMode):
    """Notes the operands of every addition, to see what forward adds to the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.operands: list[Any] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _ADDS:
            self.operands += list(args[:2])
        return func(*args, **(kwargs or {}))


def _skip_source(block: nn.Module, x: torch.Tensor) -> str | None:
    """The stage whose output forward uses as its skip (``x`` overwritten before the skip), else None.

    The skip is what the shortcut receives, or what is added to the branch; it should be the
    block's input. Hooks note the expand and depthwise outputs; an error later in forward (the
    shapes rarely match) is no obstacle: what was used is noted before the failing operation runs.
    """
    outputs: dict[str, torch.Tensor] = {}
    used: list[Any] = []
    hooks = []
    for name in ("expand", "depthwise"):
        stage = getattr(block, name, None)
        if isinstance(stage, nn.Module):
            hooks.append(stage.register_forward_hook(lambda m, i, o, name=name: outputs.setdefault(name, o)))
    shortcut = getattr(block, "shortcut", None)
    if isinstance(shortcut, nn.Module):
        hooks.append(shortcut.register_forward_pre_hook(lambda m, inputs: used.extend(inputs[:1])))
    adds = _AddOperands()
    try:
        with torch.no_grad(), adds:
            block(x)
    except Exception:  # the mistake usually breaks forward; the other cases report the error itself
        pass
    finally:
        for hook in hooks:
            hook.remove()
    for name, out in outputs.items():
        if any(t is out for t in used + adds.operands):
            return name
    return None


def _case_skip_from_input(Block: Any) -> None:
    for cin, cout, s, e, h, w in (_IDENTITY, _SHORTCUT):
        block = _build(Block, cin, cout, s, e).eval()
        source = _skip_source(block, torch.randn(2, cin, h, w))
        if source is not None:
            fail("the skip taken from the block's input x (x itself, or shortcut(x))",
                 f"the skip taken from {source}'s output: x was overwritten before the skip",
                 "take the skip from the block's input: keep x as it came in (e.g. out = self.expand(x), not "
                 "x = self.expand(x)), then add x, or self.shortcut(x), to the branch")


def _case_output_shapes(Block: Any) -> None:
    for cin, cout, s, e, h, w in _CONFIGS:
        block = _build(Block, cin, cout, s, e)
        out = _call(block, torch.randn(2, cin, h, w), what=f"block({cin}->{cout}, stride {s}) on [2, {cin}, {h}, {w}]",
                    hint=_forward_hint)
        out = _tensor(out, "forward")
        expected = (2, cout, _out(h, s), _out(w, s))
        if tuple(out.shape[2:]) != expected[2:]:
            hint = "only the 3x3 depthwise conv (padding=1) and the shortcut's 1x1 conv use the stride"
        else:
            hint = "project (and the shortcut) should output out_channels"
        _shape(out, expected, f"forward", hint)


def _case_expand(Block: Any) -> None:
    for cin, cout, s, e, h, w in _CONFIGS[1:4] + [(8, 8, 1, None, 5, 5)]:
        block = Block(cin, cout) if e is None else _build(Block, cin, cout, s, e)
        hidden = cin * (6 if e is None else e)
        out = _call(block.expand, torch.randn(2, cin, h, w), what="expand", hint=_STAGE_HINTS["expand"])
        out = _tensor(out, "expand")
        if out.dim() == 4 and out.shape[1] != hidden:
            hint = (f"expand widens to in_channels*expansion_factor = {cin}*{6 if e is None else e}"
                    + (" (the default expansion_factor is 6)" if e is None else ""))
        else:
            hint = "expand is a 1x1 conv without stride: the stride belongs to the depthwise conv"
        _shape(out, (2, hidden, h, w), "expand", hint)
        check(out.min() >= 0, expected="expand output >= 0 (it ends with ReLU)", got=f"min {out.min().item():.3f}",
              hint=_STAGE_HINTS["expand"])


def _case_depthwise(Block: Any) -> None:
    for cin, cout, s, e, h, w in _CONFIGS[1:4]:
        block = _build(Block, cin, cout, s, e)
        hidden = cin * e
        x = torch.randn(2, hidden, h, w)
        hint = f"depthwise takes and returns hidden = {cin}*{e} channels. {_STAGE_HINTS['depthwise']}"
        out = _tensor(_call(block.depthwise, x.clone(), what=f"depthwise on [2, {hidden}, {h}, {w}]", hint=hint),
                      "depthwise")
        _shape(out, (2, hidden, _out(h, s), _out(w, s)), "depthwise",
               f"depthwise keeps the {hidden} channels and uses the block's stride ({s}) with padding=1")
        check(out.min() >= 0, expected="depthwise output >= 0 (it ends with ReLU)", got=f"min {out.min().item():.3f}",
              hint=_STAGE_HINTS["depthwise"])
        # Depthwise: output channel c sees input channel c only.
        block.eval()
        x2 = x.clone()
        x2[:, 0] += 1 + torch.rand_like(x2[:, 0])
        with torch.no_grad():
            changed = (block.depthwise(x2.clone()) - block.depthwise(x.clone())).abs().amax(dim=(0, 2, 3)) > 1e-6
        leaked = int(changed[1:].sum())
        check(leaked == 0, expected="changing input channel 0 changes output channel 0 only",
              got=f"{leaked} other output channels changed",
              hint="depthwise conv needs groups=hidden_channels: one 3x3 filter per channel")


def _case_project(Block: Any) -> None:
    for cin, cout, s, e, h, w in _CONFIGS[:4]:
        block = _build(Block, cin, cout, s, e)
        hidden = cin * e
        out = _tensor(_call(block.project, torch.randn(2, hidden, h, w), what=f"project on [2, {hidden}, {h}, {w}]",
                            hint=_STAGE_HINTS["project"]), "project")
        _shape(out, (2, cout, h, w), "project", f"{_STAGE_HINTS['project']}; no stride")
        check((out < 0).any(), expected="some negative values (a linear projection)", got="all values >= 0",
              hint="a ReLU after the projection makes it non-linear: the projection should end with BatchNorm")


def _case_shortcut(Block: Any) -> None:
    for cin, cout, s, e, h, w in _CONFIGS:
        block = _build(Block, cin, cout, s, e)
        needed = s != 1 or cin != cout
        shortcut = getattr(block, "shortcut", None)
        where = f"block({cin}->{cout}, stride {s})"
        if not needed:
            check(shortcut is None, expected=f"{where}.shortcut is None", got=_describe(shortcut),
                  hint="no shortcut when stride == 1 and in_channels == out_channels: set it to None and add x itself")
            continue
        check(shortcut is not None, expected=f"{where}.shortcut to be a module", got="None",
              hint="a shortcut is needed when stride != 1 or channels differ (both conditions)")
        _module(shortcut, "shortcut", _STAGE_HINTS["shortcut"])
        out = _call(shortcut, torch.randn(2, cin, h, w), what=f"{where}.shortcut", hint=_STAGE_HINTS["shortcut"])
        out = _tensor(out, "shortcut")
        hint = ("the shortcut's 1x1 conv needs the block's stride" if out.dim() == 4 and out.shape[1] == cout
                else _STAGE_HINTS["shortcut"])
        _shape(out, (2, cout, _out(h, s), _out(w, s)), f"{where}.shortcut", hint)


def _skip(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shortcut = getattr(block, "shortcut", None)
    if shortcut is None:
        return x
    return _tensor(_call(shortcut, x.clone(), what="shortcut", hint=_STAGE_HINTS["shortcut"]), "shortcut")


def _case_residual(Block: Any) -> None:
    """Silence the branch: then the block must return relu(skip)."""
    for cin, cout, s, e, h, w in (_IDENTITY, _SHORTCUT):
        block = _build(Block, cin, cout, s, e).eval()
        with torch.no_grad():
            for p in block.project.parameters():
                p.zero_()
            x = torch.randn(2, cin, h, w)
            expected = F.relu(_skip(block, x))
            out = _tensor(_call(block, x.clone(), what="forward", hint=_forward_hint), "forward")
        _shape(out, expected.shape, "forward", "see the output-shape case")
        if torch.allclose(out, expected, atol=1e-5):
            continue
        if out.abs().max() < 1e-6:
            hint = f"missing residual add: with project's output at 0 the block returned 0; it should be {_FORWARD}"
        elif (out < 0).any():
            hint = "missing final ReLU: apply it after adding the skip"
        else:
            hint = f"forward should be {_FORWARD}"
        fail(f"relu({'x' if block.shortcut is None else 'shortcut(x)'}) when the branch outputs 0",
             f"max difference {(out - expected).abs().max().item():.3g}", hint)


def _case_final_relu(Block: Any) -> None:
    for cin, cout, s, e, h, w in (_IDENTITY, _SHORTCUT):
        out = _tensor(_call(_build(Block, cin, cout, s, e), torch.randn(2, cin, h, w), what="forward",
                            hint=_forward_hint), "forward")
        check(out.min() >= 0, expected="output >= 0 everywhere", got=f"min {out.min().item():.3f}",
              hint="missing final ReLU: apply it after adding the skip")
        check((out == 0).any(), expected="some zeros (ReLU)", got="no zeros", hint="apply ReLU after adding the skip")


def _case_forward(Block: Any) -> None:
    for cin, cout, s, e, h, w in (_IDENTITY, _SHORTCUT, _CONFIGS[3]):
        block = _randomize(_build(Block, cin, cout, s, e)).eval()
        x = torch.randn(2, cin, h, w)
        with torch.no_grad():
            branch = block.project(block.depthwise(block.expand(x.clone())))
            skip = _skip(block, x)
            out = _tensor(_call(block, x.clone(), what="forward", hint=_forward_hint), "forward")
        expected = F.relu(branch + skip)
        _shape(out, expected.shape, "forward", "see the output-shape case")
        if torch.allclose(out, expected, atol=1e-5):
            continue
        if torch.allclose(out, F.relu(branch), atol=1e-5):
            hint = "missing residual add: add the skip (x or shortcut(x)) before the final ReLU"
        elif torch.allclose(out, branch + skip, atol=1e-5):
            hint = "missing final ReLU after the add"
        elif torch.allclose(out, F.relu(branch) + skip, atol=1e-5):
            hint = "the ReLU goes after the add: relu(branch + skip), not relu(branch) + skip"
        else:
            hint = f"forward should compute {_FORWARD}"
        fail(_FORWARD, f"max difference {(out - expected).abs().max().item():.3g}", hint)


def _case_gradients(Block: Any) -> None:
    for cin, cout, s, e, h, w in (_IDENTITY, _SHORTCUT):
        _gradient_case(lambda: _build(Block, cin, cout, s, e), (2, cin, h, w), "forward",
                       "every layer built in __init__ should be used in forward (is the shortcut or a stage skipped?)")


def _stage_hint(name: str, got: int, ref: int, hidden: int, ref_stage: nn.Module | None) -> str:
    batchnorm = sum(_count(m) for m in (ref_stage.modules() if ref_stage is not None else ())
                    if isinstance(m, nn.BatchNorm2d))
    if ref - got == batchnorm > 0:
        return f"{name}: missing BatchNorm2d after the conv"
    if name == "depthwise" and got >= hidden * hidden * 9:
        return "depthwise conv needs groups=hidden_channels (one 3x3 filter per channel)"
    if name == "shortcut" and ref == 0:
        return "no shortcut when stride == 1 and channels match"
    if name == "shortcut" and got == 0:
        return "shortcut needed when stride != 1 or channels differ"
    return _STAGE_HINTS[name]


def _case_parameters(Block: Any) -> None:
    for cin, cout, s, e, _, _ in _CONFIGS:
        block, ref = _build(Block, cin, cout, s, e), _RefBlock(cin, cout, s, e)
        n, n_ref = _count(block), _count(ref)
        if n == n_ref:
            continue
        parts = []
        for name in _STAGES:
            got_part, ref_part = getattr(block, name, None), getattr(ref, name)
            got_n = _count(got_part) if isinstance(got_part, nn.Module) else 0
            ref_n = _count(ref_part) if ref_part is not None else 0
            if got_n != ref_n:
                parts.append((name, got_n, ref_n))
        detail = "; ".join(f"{name} {g} (expected {r})" for name, g, r in parts)
        hint = "; ".join(_stage_hint(name, g, r, cin * e, getattr(ref, name)) for name, g, r in parts) \
            or "check each stage's layers"
        fail(f"{n_ref} parameters for ({cin}, {cout}, stride={s}, expansion_factor={e}) (conv biases not counted)",
             f"{n}" + (f": {detail}" if detail else ""), hint)


def _case_reference(Block: Any) -> None:
    for cin, cout, s, e, h, w in (_IDENTITY, _SHORTCUT, _CONFIGS[3]):
        ref = _randomize(_RefBlock(cin, cout, s, e)).eval()
        block = _build(Block, cin, cout, s, e).eval()
        if not _copy_weights(ref, block, _STAGES):
            continue  # written too differently to copy weights over; the other cases check behaviour
        x = torch.randn(2, cin, h, w)
        with torch.no_grad():
            expected = ref(x.clone())
            out = _tensor(_call(block, x.clone(), what="forward", hint=_forward_hint), "forward")
        _shape(out, expected.shape, "forward", "see the output-shape case")
        check(torch.allclose(out, expected, atol=1e-4),
              expected="the reference block's output (same weights, eval mode)",
              got=f"max difference {(out - expected).abs().max().item():.3g}",
              hint="order within each stage is conv -> BatchNorm (-> ReLU); project has no ReLU; "
                   f"forward is {_FORWARD}")


def test_block(InvertedResidualBlock):
    """Grade notebook 02's ``InvertedResidualBlock`` class (pass the class, not an instance)."""
    B = InvertedResidualBlock
    return grade("test_block", [
        Case("InvertedResidualBlock is defined",
             lambda: require_answer(B, "InvertedResidualBlock",
                                    lambda b: is_stub_instance(b(16, 24, 2, 3), _STAGES[:3])), required=True),
        Case("builds with (in_channels, out_channels, stride, expansion_factor)", lambda: _case_build(B),
             required=True),
        Case("has the stages expand, depthwise, project, shortcut", lambda: _case_stages(B), required=True),
        Case("the skip is taken from the block's input", lambda: _case_skip_from_input(B), required=True),
        Case("output shapes (stride 1 and 2, odd and non-square inputs)", lambda: _case_output_shapes(B)),
        Case("expand: 1x1 conv to in_channels*expansion_factor, BN, ReLU", lambda: _case_expand(B)),
        Case("depthwise: 3x3, one filter per channel, the block's stride", lambda: _case_depthwise(B)),
        Case("project: 1x1 conv to out_channels, linear (no activation)", lambda: _case_project(B)),
        Case("shortcut: None exactly when stride == 1 and channels match", lambda: _case_shortcut(B)),
        Case("residual is added (branch silenced -> relu(skip))", lambda: _case_residual(B)),
        Case("final ReLU after the add", lambda: _case_final_relu(B)),
        Case("forward = relu(project(depthwise(expand(x))) + skip)", lambda: _case_forward(B)),
        Case("gradients reach every parameter", lambda: _case_gradients(B)),
        Case("parameter count matches the reference", lambda: _case_parameters(B)),
        Case("same output as the reference with the same weights", lambda: _case_reference(B)),
    ], layers=True)
