"""Graders of notebook 03: ``MobileNetBackbone`` and ``MobileNetLikeClassifier``.

Shapes on several input sizes, each stage on its own (stem, every block, ``_make_block``,
head), raw logits, gradients, eval-mode determinism and parameter counts against the
references in ``helper_utils.reference`` (convolution biases not counted).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from helper_utils.reference import InvertedResidualBlock as _RefBlock
from helper_utils.reference import MobileNetBackbone as _RefBackbone
from helper_utils.reference import MobileNetLikeClassifier as _RefClassifier
from unittests._checks import (
    _call,
    _copy_leaves,
    _copy_weights,
    _count,
    _describe,
    _gradient_case,
    _init_hint,
    _module,
    _out,
    _randomize,
    _shape,
    _tensor,
)
from unittests.inverted_residual_block import _STAGES
from unittests.framework import Case, check, fail, grade, is_stub_instance, require_answer

__all__ = ["test_backbone", "test_classifier"]

_BLOCKS = [(16, 24, 2, 3), (24, 32, 2, 3), (32, 64, 2, 6)]  # in, out, stride, expansion factor
_BACKBONE_PARAMS = 32_584  # the reference, conv biases not counted (it has none)
_STEM_HINT = "stem: Conv2d(3, 16, kernel_size=3, stride=2, padding=1), BatchNorm2d(16), ReLU"
_BLOCKS_HINT = "blocks: _make_block(16, 24, 2, 3), _make_block(24, 32, 2, 3), _make_block(32, 64, 2, 6), in this order"
_HEAD_HINT = "head: AdaptiveAvgPool2d(1), Flatten(), Linear(64, num_classes)"


def _final(n: int) -> int:
    """Backbone output size for input size n: four stride-2 stages."""
    for _ in range(4):
        n = _out(n, 2)
    return n


def _build_backbone(Backbone: Any) -> nn.Module:
    try:
        model = Backbone()
    except Exception as err:
        fail("MobileNetBackbone() to build", f"{type(err).__name__}: {err}", _init_hint(err, "MobileNetBackbone()"))
    return _module(model, "MobileNetBackbone()", "MobileNetBackbone must be a class that subclasses nn.Module")


def _run_blocks(blocks: nn.Module, x: torch.Tensor) -> Any:
    """Apply ``blocks`` whether it is an nn.Sequential (callable) or an nn.ModuleList (iterated)."""
    if isinstance(blocks, nn.ModuleList):
        for block in blocks:
            x = block(x)
        return x
    return blocks(x)


def _backbone_hint(out: torch.Tensor, expected: tuple) -> str:
    if out.dim() != 4:
        return "the backbone returns feature maps [B, 64, H/16, W/16]: no pooling or flattening in the backbone"
    if out.shape[1] != expected[1]:
        return "the last block outputs 64 channels: " + _BLOCKS_HINT
    if out.shape[2] > expected[2]:
        return "a stride-2 is missing: the stem and all three blocks use stride 2"
    return "too many stride-2 stages: only the stem and the three blocks use stride 2"


# ----------------------------------------------------------------------------------------
# test_backbone
# ----------------------------------------------------------------------------------------

def _case_backbone_build(Backbone: Any) -> None:
    model = _build_backbone(Backbone)
    for name, what in (("stem", _STEM_HINT), ("blocks", _BLOCKS_HINT)):
        value = getattr(model, name, None)
        if value is None:
            fail(f"`{name}` to be a module", "None" if hasattr(model, name) else "no such attribute",
                 f"self.{name} is still None or missing: build it. {what}")
        _module(value, name, what)
    blocks = _block_list(model)
    if blocks is not None and not all(isinstance(b, nn.Module) for b in blocks):
        fail("blocks made of modules", [_describe(b) for b in blocks],
             "_make_block returned None: it should return InvertedResidualBlock(in_channels, out_channels, stride, "
             "expansion_factor)")
    make = getattr(model, "_make_block", None)
    check(callable(make), expected="a method _make_block(in_channels, out_channels, stride, expansion_factor)",
          got=_describe(make), hint="define _make_block and build the blocks with it")


def _case_backbone_shapes(Backbone: Any) -> None:
    model = _build_backbone(Backbone)
    for h, w in ((64, 64), (96, 96), (48, 80), (50, 70)):
        out = _tensor(_call(model, torch.randn(2, 3, h, w), what=f"backbone on [2, 3, {h}, {w}]",
                            hint="a layer gets the wrong number of channels: " + _BLOCKS_HINT), "the backbone")
        expected = (2, 64, _final(h), _final(w))
        _shape(out, expected, f"backbone on [2, 3, {h}, {w}]", _backbone_hint(out, expected))


def _case_stem(Backbone: Any) -> None:
    model = _build_backbone(Backbone)
    out = _tensor(_call(model.stem, torch.randn(2, 3, 64, 64), what="stem on [2, 3, 64, 64]", hint=_STEM_HINT), "stem")
    hint = _STEM_HINT if out.dim() != 4 or out.shape[1] != 16 else "the stem halves H and W: stride=2, padding=1"
    _shape(out, (2, 16, 32, 32), "stem", hint)
    check(out.min() >= 0 and (out == 0).any(), expected="stem output >= 0 with some zeros (ends with ReLU)",
          got=f"min {out.min().item():.3f}", hint="the stem ends with ReLU, after BatchNorm")
    n, n_ref = _count(model.stem), _count(_RefBackbone().stem)
    if n != n_ref:
        hint = "missing BatchNorm2d(16) after the stem conv" if n == 3 * 16 * 9 else _STEM_HINT
        fail(f"{n_ref} parameters in the stem (conv biases not counted)", n, hint)
    ref = _randomize(_RefBackbone().stem).eval()
    model.stem.eval()
    if _copy_leaves(ref, model.stem):
        x = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            diff = (model.stem(x.clone()) - ref(x.clone())).abs().max().item()
        check(diff < 1e-4, expected="the reference stem's output (same weights)", got=f"max difference {diff:.3g}",
              hint="order: conv -> BatchNorm -> ReLU")


def _block_list(model: nn.Module) -> list[nn.Module] | None:
    blocks = model.blocks
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)):
        return list(blocks)
    return None


def _case_blocks(Backbone: Any) -> None:
    model = _build_backbone(Backbone)
    blocks, size = _block_list(model), 32
    if blocks is None:  # a custom container: check it as a whole
        out = _tensor(_call(model.blocks, torch.randn(2, 16, size, size), what="blocks on [2, 16, 32, 32]",
                            hint=_BLOCKS_HINT), "blocks")
        _shape(out, (2, 64, 4, 4), "blocks", _BLOCKS_HINT)
        return
    check(len(blocks) == len(_BLOCKS), expected=f"{len(_BLOCKS)} blocks", got=len(blocks),
          hint=f"exactly three blocks: {_BLOCKS_HINT}")
    got, hints = [], []  # every block is fed its expected input, so all three are checked
    for i, ((cin, cout, s, e), block) in enumerate(zip(_BLOCKS, blocks)):
        want = f"blocks[{i}] should be _make_block({cin}, {cout}, {s}, {e})"
        out = _call(block, torch.randn(2, cin, size, size), what=f"blocks[{i}] on [2, {cin}, {size}, {size}]",
                    hint=f"{want}; {_BLOCKS_HINT}")
        size = _out(size, s)
        shape = list(out.shape) if isinstance(out, torch.Tensor) else _describe(out)
        if shape != [2, cout, size, size]:
            got.append(f"blocks[{i}] -> {shape}, expected {[2, cout, size, size]}")
            hints.append(want + (" (stride 2 halves H and W)" if isinstance(out, torch.Tensor) and out.dim() == 4
                                 and out.shape[1] == cout else ""))
            continue
        n, n_ref = _count(block), _count(_RefBlock(cin, cout, s, e))
        if n != n_ref:
            wrong_e = [f for f in range(1, 9) if f != e and _count(_RefBlock(cin, cout, s, f)) == n]
            got.append(f"blocks[{i}]: {n} parameters, expected {n_ref}")
            hints.append(f"{want}: expected expansion_factor {e}, got {wrong_e[0]}" if wrong_e else want)
    check(not got, expected="blocks 16->24 (stride 2, e=3), 24->32 (stride 2, e=3), 32->64 (stride 2, e=6)",
          got="; ".join(got), hint="; ".join(hints))


def _case_make_block(Backbone: Any) -> None:
    model = _build_backbone(Backbone)
    for cin, cout, s, e, h, w in ((8, 12, 2, 2, 6, 5), (12, 12, 1, 3, 4, 4)):
        call = f"_make_block({cin}, {cout}, {s}, {e})"
        hint = ("_make_block(in_channels, out_channels, stride, expansion_factor) should return "
                "InvertedResidualBlock(in_channels, out_channels, stride, expansion_factor)")
        block = _call(model._make_block, cin, cout, s, e, what=call, hint=hint)
        _module(block, call, hint + "; did you forget to return it?")
        out = _tensor(_call(block, torch.randn(2, cin, h, w), what=f"{call} on [2, {cin}, {h}, {w}]", hint=hint), call)
        _shape(out, (2, cout, _out(h, s), _out(w, s)), call, hint + " (pass the arguments in this order)")
        n, n_ref = _count(block), _count(_RefBlock(cin, cout, s, e))
        check(n == n_ref, expected=f"{n_ref} parameters in {call}", got=n,
              hint=hint + " (pass expansion_factor through)")


def _case_backbone_forward(Backbone: Any) -> None:
    model = _randomize(_build_backbone(Backbone)).eval()
    _check_forward_composes(model, torch.randn(2, 3, 32, 48), lambda t: _run_blocks(model.blocks, model.stem(t)),
                            "blocks(stem(x))", f"see the blocks case: {_BLOCKS_HINT}",
                            "forward should return self.blocks(self.stem(x))", "nothing else")


def _check_forward_composes(model, x, compose, parts: str, parts_hint: str, hint: str, final: str) -> None:
    """``model(x)`` equals ``compose(x)``, the model's own parts called in order (``parts`` names them)."""
    with torch.no_grad():
        expected = _tensor(_call(compose, x.clone(), what=parts, hint=parts_hint), parts)
        out = _tensor(_call(model, x.clone(), what="forward", hint=hint), "forward")
    _shape(out, expected.shape, "forward", hint)
    check(torch.allclose(out, expected, atol=1e-5), expected=parts,
          got=f"max difference {(out - expected).abs().max().item():.3g}", hint=f"{hint}, {final}")


def _case_backbone_parameters(Backbone: Any) -> None:
    model, ref = _build_backbone(Backbone), _RefBackbone()
    n = _count(model)
    if n == _BACKBONE_PARAMS:
        return
    stem, blocks = _count(model.stem), _count(model.blocks)
    parts = []
    if stem != _count(ref.stem):
        parts.append(_STEM_HINT)
    if blocks != _count(ref.blocks):
        parts.append(_BLOCKS_HINT + " (check each block's channels and expansion_factor)")
    if stem + blocks != n:
        parts.append("only stem and blocks hold parameters: no extra layers")
    fail(f"{_BACKBONE_PARAMS:,} parameters (conv biases not counted)",
         f"{n:,} (stem {stem:,}, blocks {blocks:,})", "; ".join(parts))


def _case_backbone_gradients(Backbone: Any) -> None:
    _gradient_case(lambda: _build_backbone(Backbone), (2, 3, 32, 32), "the backbone",
                   "every layer built in __init__ should be used in forward (stem, then blocks)")


def _case_backbone_eval(Backbone: Any) -> None:
    model = _build_backbone(Backbone).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        a = _tensor(_call(model, x.clone(), what="forward in eval mode", hint="see the output-shape case"), "forward")
        b = _tensor(model(x.clone()), "forward")
        single = _tensor(model(x[:1].clone()), "forward")
    check(torch.equal(a, b), expected="the same output twice in eval mode", got="different outputs",
          hint="no randomness in forward (no dropout or noise without checking self.training)")
    check(torch.allclose(single, a[:1], atol=1e-5), expected="an image's output not depending on the rest of the batch",
          got=f"max difference {(single - a[:1]).abs().max().item():.3g}",
          hint="in eval mode BatchNorm uses running statistics: use nn.BatchNorm2d, not batch statistics by hand")


def _case_backbone_reference(Backbone: Any) -> None:
    model, ref = _build_backbone(Backbone).eval(), _randomize(_RefBackbone()).eval()
    learner_blocks, ref_blocks = _block_list(model), list(ref.blocks)
    if not _copy_leaves(ref.stem, model.stem) or learner_blocks is None or len(learner_blocks) != len(ref_blocks):
        return  # written too differently to copy weights over; the other cases check behaviour
    for src, dst in zip(ref_blocks, learner_blocks):
        if not (_copy_weights(src, dst, _STAGES) or _copy_leaves(src, dst)):
            return
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = _tensor(_call(model, x.clone(), what="forward", hint="see the output-shape case"), "forward")
        expected = ref(x.clone())
    _shape(out, expected.shape, "forward", "see the output-shape case")
    check(torch.allclose(out, expected, atol=1e-4),
          expected="the reference backbone's output (same weights, eval mode)",
          got=f"max difference {(out - expected).abs().max().item():.3g}", hint=f"{_STEM_HINT}; {_BLOCKS_HINT}")


def test_backbone(MobileNetBackbone):
    """Grade notebook 03's ``MobileNetBackbone`` class (pass the class, not an instance)."""
    M = MobileNetBackbone
    return grade("test_backbone", [
        Case("MobileNetBackbone is defined",
             lambda: require_answer(M, "MobileNetBackbone", lambda b: is_stub_instance(b(), ("stem", "blocks"))),
             required=True),
        Case("builds, with stem, blocks and _make_block", lambda: _case_backbone_build(M), required=True),
        Case("[B, 3, 64, 64] -> [B, 64, 4, 4], and other sizes", lambda: _case_backbone_shapes(M)),
        Case("stem: 3x3 conv stride 2, 3 -> 16, BN, ReLU", lambda: _case_stem(M)),
        Case("blocks: 16->24 (s2, e3), 24->32 (s2, e3), 32->64 (s2, e6)", lambda: _case_blocks(M)),
        Case("_make_block(in, out, stride, expansion_factor)", lambda: _case_make_block(M)),
        Case("forward = blocks(stem(x))", lambda: _case_backbone_forward(M)),
        Case(f"{_BACKBONE_PARAMS:,} parameters", lambda: _case_backbone_parameters(M)),
        Case("gradients reach every parameter", lambda: _case_backbone_gradients(M)),
        Case("deterministic in eval mode", lambda: _case_backbone_eval(M)),
        Case("same output as the reference with the same weights", lambda: _case_backbone_reference(M)),
    ], layers=True)


# ----------------------------------------------------------------------------------------
# test_classifier
# ----------------------------------------------------------------------------------------

def _build_classifier(Classifier: Any, *num_classes: int) -> nn.Module:
    signature = "MobileNetLikeClassifier(num_classes=7)"
    try:
        model = Classifier(num_classes=num_classes[0]) if num_classes else Classifier()
    except Exception as err:
        fail(f"{signature} to build", f"{type(err).__name__}: {err}", _init_hint(err, signature))
    return _module(model, "MobileNetLikeClassifier(...)", "MobileNetLikeClassifier must subclass nn.Module")


def _case_classifier_build(Classifier: Any) -> None:
    for args in ((), (10,)):
        model = _build_classifier(Classifier, *args)
        for name, what in (("backbone", "backbone = MobileNetBackbone()"), ("head", _HEAD_HINT)):
            value = getattr(model, name, None)
            if value is None:
                fail(f"`{name}` to be a module", "None" if hasattr(model, name) else "no such attribute",
                     f"self.{name} is still None or missing: {what}")
            _module(value, name, what)


def _case_logits_shape(Classifier: Any) -> None:
    for args, batch in (((), 2), ((10,), 3), ((3,), 1)):
        n = args[0] if args else 7
        model = _build_classifier(Classifier, *args)
        out = _tensor(_call(model, torch.randn(batch, 3, 64, 64), what=f"classifier on [{batch}, 3, 64, 64]",
                            hint=_head_hint), "forward")
        hint = _HEAD_HINT
        if out.dim() == 2 and out.shape[1] != n:
            hint = ("the default is num_classes=7" if not args else
                    f"use num_classes in Linear(64, num_classes): don't hard-code {out.shape[1]}")
        _shape(out, (batch, n), f"MobileNetLikeClassifier({'' if not args else f'num_classes={n}'})", hint)


def _case_raw_logits(Classifier: Any) -> None:
    model = _randomize(_build_classifier(Classifier)).eval()
    with torch.no_grad():
        out = _tensor(_call(model, torch.randn(4, 3, 64, 64), what="forward", hint=_head_hint), "forward")
    _shape(out, (4, 7), "forward", "see the logits-shape case")
    sums = out.sum(dim=1)
    if torch.allclose(sums, torch.ones_like(sums), atol=1e-4) and out.min() >= 0:
        fail("raw logits", "rows that sum to 1 (probabilities)",
             "remove the softmax: return raw logits; CrossEntropyLoss applies log-softmax itself")
    lse = torch.logsumexp(out, dim=1)
    if torch.allclose(lse, torch.zeros_like(lse), atol=1e-4):
        fail("raw logits", "log-probabilities (log_softmax)",
             "remove the log_softmax: return raw logits; CrossEntropyLoss applies log-softmax itself")
    check((out < 0).any(), expected="raw logits (some negative)", got="all values >= 0",
          hint="no activation after the last Linear: return raw logits")


def _case_classifier_backbone(Classifier: Any) -> None:
    model = _build_classifier(Classifier)
    out = _call(model.backbone, torch.randn(2, 3, 64, 64), what="backbone", hint="backbone = MobileNetBackbone()")
    out = _tensor(out, "backbone")
    _shape(out, (2, 64, 4, 4), "backbone", "backbone = MobileNetBackbone(): feature maps, pooling belongs to the head")
    n = _count(model.backbone)
    check(n == _BACKBONE_PARAMS, expected=f"{_BACKBONE_PARAMS:,} parameters in backbone", got=f"{n:,}",
          hint="backbone = MobileNetBackbone()")


def _head_hint(err: Exception) -> str:
    # "mat1 and mat2 shapes cannot be multiplied (AxB and CxD)": B == 1 means a [B, 64, 1, 1] map was not flattened
    shapes = re.search(r"\((\d+)x(\d+) and (\d+)x(\d+)\)", str(err))
    if shapes and shapes.group(2) == "1":
        return "add nn.Flatten() between the pooling and the Linear layer"
    if shapes:
        return "pool before the Linear layer: AdaptiveAvgPool2d(1) then Flatten gives [B, 64] for any image size"
    return _HEAD_HINT


def _case_head(Classifier: Any) -> None:
    for n in (7, 10):
        model = _build_classifier(Classifier, n)
        head = model.head
        for size in (4, 6):
            f = torch.randn(2, 64, size, size)
            out = _tensor(_call(head, f, what=f"head on [2, 64, {size}, {size}]", hint=_head_hint), "head")
            hint = _HEAD_HINT if out.dim() == 2 else "add nn.Flatten() between the pooling and the Linear layer"
            _shape(out, (2, n), f"head on [2, 64, {size}, {size}]", hint)
        # Average pooling: a feature map and its spatial mean give the same logits.
        f = torch.randn(2, 64, 4, 4)
        with torch.no_grad():
            a, b = head(f), head(f.mean(dim=(2, 3), keepdim=True).expand_as(f).contiguous())
        check(torch.allclose(a, b, atol=1e-5), expected="logits that depend on the average of each channel only",
              got=f"max difference {(a - b).abs().max().item():.3g}", hint="pool with AdaptiveAvgPool2d(1)")
        params = _count(head)
        check(params == 65 * n, expected=f"{65 * n} parameters in the head (Linear(64, {n}))", got=params,
              hint=_HEAD_HINT)


def _case_classifier_forward(Classifier: Any) -> None:
    model = _randomize(_build_classifier(Classifier)).eval()
    _check_forward_composes(model, torch.randn(2, 3, 48, 64), lambda t: model.head(model.backbone(t)),
                            "head(backbone(x))", _head_hint,
                            "forward should return self.head(self.backbone(x))", "with no activation after it")


def _case_classifier_parameters(Classifier: Any) -> None:
    for n in (7, 10):
        model, n_ref = _build_classifier(Classifier, n), _count(_RefClassifier(n))
        got = _count(model)
        check(got == n_ref, expected=f"{n_ref:,} parameters for {n} classes (conv biases not counted)",
              got=f"{got:,}", hint="backbone = MobileNetBackbone(); " + _HEAD_HINT)


def _case_classifier_gradients(Classifier: Any) -> None:
    _gradient_case(lambda: _build_classifier(Classifier), (2, 3, 32, 32), "the classifier",
                   "forward should use backbone and head: self.head(self.backbone(x))")


def test_classifier(MobileNetLikeClassifier):
    """Grade notebook 03's ``MobileNetLikeClassifier`` class (pass the class, not an instance)."""
    M = MobileNetLikeClassifier
    return grade("test_classifier", [
        Case("MobileNetLikeClassifier is defined",
             lambda: require_answer(M, "MobileNetLikeClassifier",
                                    lambda c: is_stub_instance(c(), ("backbone", "head"))), required=True),
        Case("builds, with backbone and head", lambda: _case_classifier_build(M), required=True),
        Case("logits [B, num_classes] (num_classes 7, 10, 3)", lambda: _case_logits_shape(M)),
        Case("raw logits (no softmax)", lambda: _case_raw_logits(M)),
        Case("backbone: MobileNetBackbone, [B, 64, 4, 4]", lambda: _case_classifier_backbone(M)),
        Case("head: average pool, flatten, Linear(64, num_classes)", lambda: _case_head(M)),
        Case("forward = head(backbone(x))", lambda: _case_classifier_forward(M)),
        Case("parameter count matches the reference", lambda: _case_classifier_parameters(M)),
        Case("gradients reach every parameter", lambda: _case_classifier_gradients(M)),
    ], layers=True)
