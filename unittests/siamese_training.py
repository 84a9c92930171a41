"""Graders of notebook 05: ``SiameseEncoder``, ``SiameseNetwork``, ``pairwise_distances``,
``batch_hard_triplet_loss``, ``recall_at_k`` and ``ProjectionHead``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from helper_utils.reference import MobileNetBackbone
from unittests.framework import Case, check, fail, grade, is_stub_instance, require_answer

__all__ = ["test_batch_hard_triplet_loss", "test_pairwise_distances", "test_projection_head", "test_recall_at_k",
           "test_siamese_encoder", "test_siamese_network"]

_ATOL = 1e-5


def _shape(x: Any) -> Any:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- SiameseEncoder


def _tiny_backbone() -> nn.Module:
    """Another backbone: ``(B, 3, 6, 10) -> (B, 32, 3, 5)``, not square and not 64 channels."""
    return nn.Sequential(nn.Conv2d(3, 32, kernel_size=3, stride=2, padding=1), nn.Tanh())


_ANY_BACKBONE_HINT = ("the encoder must fit any backbone: use adaptive pooling (nn.AdaptiveAvgPool2d(1), not a "
                      "fixed kernel like AvgPool2d(4)) and no layer or reshape sized for 64 channels")


def _pooling_hint(out: torch.Tensor, fmap: torch.Tensor) -> str:
    if out.shape == fmap.shape[:2]:
        if torch.allclose(out, fmap.amax(dim=(2, 3)), atol=_ATOL):
            return "use average pooling (nn.AdaptiveAvgPool2d(1)), not max pooling"
        if torch.allclose(out, fmap.sum(dim=(2, 3)), atol=_ATOL):
            return "average over H and W: you sum them"
    return "representation should be pooling + flatten only (no extra layers), applied to backbone(x)"


def _encoder_shape_hint(out: Any, fmap: torch.Tensor) -> str:
    if not isinstance(out, torch.Tensor):
        return "forward should return a tensor: self.representation(self.backbone(x))"
    b, c = fmap.shape[:2]
    if out.shape == (b, c, 1, 1):
        return "flatten after pooling: (B, C, 1, 1) -> (B, C), e.g. nn.Flatten()"
    if out.shape == (b, fmap[0].numel()):
        return "pool over H and W before flattening (nn.AdaptiveAvgPool2d(1))"
    return "the encoder returns backbone features pooled over H, W and flattened: (B, C)"


def _encoder_case_builds(SiameseEncoder):
    enc = SiameseEncoder(MobileNetBackbone())
    check(isinstance(enc, nn.Module), expected="an nn.Module", got=type(enc).__name__,
          hint="SiameseEncoder should subclass nn.Module and call super().__init__()")


def _encoder_case_backbone(SiameseEncoder):
    backbone = MobileNetBackbone()
    enc = SiameseEncoder(backbone)
    if not hasattr(enc, "backbone"):
        fail("an attribute `backbone`", "no such attribute",
             "store the backbone you were given: self.backbone = backbone")
    check(enc.backbone is not None, expected="self.backbone is the backbone passed in", got="None",
          hint="self.backbone is still the None placeholder: self.backbone = backbone")
    check(enc.backbone is backbone, expected="self.backbone is the backbone passed in",
          got=f"another object ({type(enc.backbone).__name__})",
          hint="keep the backbone you were given, not a copy or a new MobileNetBackbone(): its trained weights "
               "live in that object")


def _encoder_case_representation(SiameseEncoder):
    enc = SiameseEncoder(MobileNetBackbone())
    rep = getattr(enc, "representation", None)
    check(isinstance(rep, nn.Module), expected="an nn.Module attribute `representation`", got=type(rep).__name__,
          hint="self.representation = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())")
    fmap = torch.randn(2, 64, 4, 4)
    out = rep(fmap.clone())  # the learner's copy: fmap stays the grader's
    check(isinstance(out, torch.Tensor) and out.shape == (2, 64), expected="representation: (2, 64, 4, 4) -> (2, 64)",
          got=_shape(out), hint=_encoder_shape_hint(out, fmap))
    check(torch.allclose(out, fmap.mean(dim=(2, 3)), atol=_ATOL), expected="the mean of each channel over H and W",
          got="other values", hint=_pooling_hint(out, fmap))


def _encoder_case_shape(SiameseEncoder):
    enc = SiameseEncoder(MobileNetBackbone()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = enc(x)
    check(isinstance(out, torch.Tensor) and out.shape == (2, 64), expected=(2, 64), got=_shape(out),
          hint=_encoder_shape_hint(out, torch.empty(2, 64, 4, 4)))


def _encoder_case_average(SiameseEncoder, make_backbone, shape):
    backbone = make_backbone().eval()
    enc = SiameseEncoder(backbone).eval()
    x = torch.randn(*shape)
    other = make_backbone is _tiny_backbone
    with torch.no_grad():
        fmap = backbone(x)  # (B, C, h, w)
        try:
            out = enc(x)
        except RuntimeError as e:
            if not other:
                raise
            fail(tuple(fmap.shape[:2]), f"RuntimeError: {e}", _ANY_BACKBONE_HINT)
    check(isinstance(out, torch.Tensor) and out.shape == fmap.shape[:2], expected=tuple(fmap.shape[:2]),
          got=_shape(out), hint=_ANY_BACKBONE_HINT if other else _encoder_shape_hint(out, fmap))
    check(torch.allclose(out, fmap.mean(dim=(2, 3)), atol=_ATOL), expected="backbone(x) averaged over H and W",
          got=f"max abs difference {(out - fmap.mean(dim=(2, 3))).abs().max().item():.3g}",
          hint=_pooling_hint(out, fmap))


def _encoder_case_gradients(SiameseEncoder):
    backbone = MobileNetBackbone()
    enc = SiameseEncoder(backbone).train()
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    check(not frozen, expected="every backbone parameter trainable", got=f"requires_grad=False for {frozen[:3]}...",
          hint="don't freeze the backbone (requires_grad=False) in the encoder: triplet training fine-tunes it")
    out = enc(torch.randn(2, 3, 64, 64))
    check(isinstance(out, torch.Tensor) and out.requires_grad, expected="an output that carries gradients",
          got="no autograd graph" if isinstance(out, torch.Tensor) else type(out).__name__,
          hint="don't detach the features or run the backbone under torch.no_grad(): training fine-tunes it")
    out.pow(2).sum().backward()
    missing = [n for n, p in backbone.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    check(not missing, expected="a gradient for every backbone parameter", got=f"none for {missing[:3]}...",
          hint="the output must come from the backbone you were given (self.backbone(x)), not a copy")


def test_siamese_encoder(SiameseEncoder):
    """Grade ``SiameseEncoder(backbone)``: pooled, flattened backbone features ``(B, C)``."""
    cases = [
        Case("SiameseEncoder is defined",
             lambda: require_answer(SiameseEncoder, "SiameseEncoder",
                                    lambda e: is_stub_instance(e(_tiny_backbone()), ("backbone", "representation"))),
             required=True),
        Case("builds from a backbone", lambda: _encoder_case_builds(SiameseEncoder), required=True),
        Case("keeps the backbone it was given", lambda: _encoder_case_backbone(SiameseEncoder)),
        Case("representation pools and flattens", lambda: _encoder_case_representation(SiameseEncoder)),
        Case("output shape (B, 64) with MobileNetBackbone", lambda: _encoder_case_shape(SiameseEncoder)),
        Case("output is the average of the backbone's features",
             lambda: _encoder_case_average(SiameseEncoder, MobileNetBackbone, (2, 3, 64, 64))),
        Case("works with another backbone ((B, 32, 3, 5) features)",
             lambda: _encoder_case_average(SiameseEncoder, _tiny_backbone, (4, 3, 6, 10))),
        Case("gradients reach the backbone", lambda: _encoder_case_gradients(SiameseEncoder)),
    ]
    return grade("test_siamese_encoder", cases, layers=True)


# --------------------------------------------------------------------------- SiameseNetwork

_EMB_DIM = 8  # not 64: the network must not assume the encoder's width


def _tiny_embedder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, kernel_size=3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, _EMB_DIM))


def _triplet_batch():
    return tuple(torch.randn(2, 3, 8, 8) for _ in range(3))  # anchor, positive, negative


def _three(out: Any):
    check(isinstance(out, (tuple, list)) and len(out) == 3,
          expected="a tuple of 3 embeddings (anchor, positive, negative)",
          got=f"{type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list)) else _shape(out),
          hint="return all three: (self.get_embedding(anchor), self.get_embedding(positive), "
               "self.get_embedding(negative))")
    for name, e in zip(("anchor", "positive", "negative"), out):
        check(isinstance(e, torch.Tensor) and e.shape == (2, _EMB_DIM), expected=f"{name}: (2, {_EMB_DIM})",
              got=f"{name}: {_shape(e)}",
              hint="each output is the embedding network's output as is: (B, D), no extra layers or reshapes")
    return out


_ORDER_HINT = "the outputs are in the wrong order: return the (anchor, positive, negative) embeddings in that order"


def _network_case_builds(SiameseNetwork):
    net = SiameseNetwork(_tiny_embedder())
    check(isinstance(net, nn.Module), expected="an nn.Module", got=type(net).__name__,
          hint="SiameseNetwork should subclass nn.Module and call super().__init__()")


def _network_case_three(SiameseNetwork):
    with torch.no_grad():
        _three(SiameseNetwork(_tiny_embedder())(*_triplet_batch()))


def _network_case_values(SiameseNetwork):
    emb = _tiny_embedder()
    net = SiameseNetwork(emb)
    inputs = _triplet_batch()
    with torch.no_grad():
        out = _three(net(*(x.clone() for x in inputs)))
        want = [emb(x) for x in inputs]
    names = ("anchor", "positive", "negative")
    for k, name in enumerate(names):
        if torch.allclose(out[k], want[k], atol=_ATOL):
            continue
        other = [names[j] for j in range(3) if torch.allclose(out[k], want[j], atol=_ATOL)]
        if other:
            hint = f"output {k} is the embedding of the {other[0]}: {_ORDER_HINT}"
        elif torch.allclose(nn.functional.normalize(want[k], dim=1), out[k], atol=_ATOL):
            hint = "return the embedding network's output as is: no normalisation"
        else:
            hint = "each output should be embedding_network(input): no extra layers or separate networks"
        fail(f"{name} output == embedding_network({name})", "other values", hint)


def _network_case_shared(SiameseNetwork):
    emb = _tiny_embedder()
    net = SiameseNetwork(emb)
    mine, given = {id(p) for p in net.parameters()}, {id(p) for p in emb.parameters()}
    check(mine == given, expected=f"exactly the embedding network's parameters ({_params(emb)} values)",
          got=f"{_params(net)} values, {len(mine & given)} of {len(given)} tensors shared",
          hint="use the one embedding network you were given for all three inputs: no copy.deepcopy, "
               "no second network, no extra layers")


def _network_case_identical(SiameseNetwork):
    net = SiameseNetwork(_tiny_embedder())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        a, p, n = _three(net(x.clone(), x.clone(), x.clone()))
    check(torch.allclose(a, p, atol=_ATOL) and torch.allclose(a, n, atol=_ATOL),
          expected="the same embedding three times for three identical images", got="different embeddings",
          hint="anchor, positive and negative must go through the same network with the same weights")


def _network_case_follows_weights(SiameseNetwork):
    emb = _tiny_embedder()
    net = SiameseNetwork(emb)
    inputs = _triplet_batch()
    with torch.no_grad():
        emb[-1].bias.add_(1.0)  # what an optimiser step on the shared network does
        out = _three(net(*(x.clone() for x in inputs)))
        want = [emb(x) for x in inputs]
    moved = [name for name, o, w in zip(("anchor", "positive", "negative"), out, want)
             if not torch.allclose(o, w, atol=_ATOL)]
    follows = all(any(torch.allclose(o, w, atol=_ATOL) for w in want) for o in out)  # in some order
    check(not moved, expected="all three outputs follow a change to the shared network's weights",
          got=f"{moved} did not" if not follows else f"{moved} are the embeddings of other inputs",
          hint=_ORDER_HINT if follows else "the network copies the embedding network (copy.deepcopy or a new "
                                           "encoder): keep and use the one you were given")


def _network_case_get_embedding(SiameseNetwork):
    emb = _tiny_embedder()
    net = SiameseNetwork(emb)
    check(callable(getattr(net, "get_embedding", None)), expected="a method get_embedding(image)",
          got="none", hint="define get_embedding(self, image) returning self.embedding_network(image)")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out, want = net.get_embedding(x), emb(x)
    check(isinstance(out, torch.Tensor) and out.shape == want.shape, expected=tuple(want.shape), got=_shape(out),
          hint="get_embedding returns the embedding network's output (B, D)")
    check(torch.allclose(out, want, atol=_ATOL), expected="get_embedding(x) == embedding_network(x)",
          got="other values", hint="get_embedding should return embedding_network(image) as is: no normalisation "
                                   "or extra layers")


def _network_case_gradients(SiameseNetwork):
    emb = _tiny_embedder()
    net = SiameseNetwork(emb)
    inputs = _triplet_batch()
    for k, name in enumerate(("anchor", "positive", "negative")):
        emb.zero_grad(set_to_none=True)
        out = _three(net(*(x.clone() for x in inputs)))
        check(out[k].requires_grad, expected=f"the {name} embedding carries gradients", got="no autograd graph",
              hint=f"don't detach the {name} embedding or compute it under torch.no_grad()")
        out[k].pow(2).sum().backward()
        missing = [n for n, p in emb.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        check(not missing, expected=f"gradients from the {name} embedding reach every shared parameter",
              got=f"none for {missing}", hint=f"the {name} branch must run through the shared embedding network")


def test_siamese_network(SiameseNetwork):
    """Grade ``SiameseNetwork(embedding_network)``: one shared network, three embeddings."""
    cases = [
        Case("SiameseNetwork is defined",
             lambda: require_answer(SiameseNetwork, "SiameseNetwork",
                                    lambda n: is_stub_instance(n(_tiny_embedder()), ("embedding_network",))),
             required=True),
        Case("builds from an embedding network", lambda: _network_case_builds(SiameseNetwork), required=True),
        Case("forward returns three embeddings", lambda: _network_case_three(SiameseNetwork)),
        Case("each output embeds its own input, in order", lambda: _network_case_values(SiameseNetwork)),
        Case("holds the one shared network's weights only", lambda: _network_case_shared(SiameseNetwork)),
        Case("identical inputs give identical embeddings", lambda: _network_case_identical(SiameseNetwork)),
        Case("outputs follow the shared weights", lambda: _network_case_follows_weights(SiameseNetwork)),
        Case("get_embedding(x) equals the embedding network's output",
             lambda: _network_case_get_embedding(SiameseNetwork)),
        Case("gradients reach the shared network from all three outputs",
             lambda: _network_case_gradients(SiameseNetwork)),
    ]
    return grade("test_siamese_network", cases)


# --------------------------------------------------------------------------- metric learning: shared pieces
# The oracles below loop over pairs, anchors and queries one at a time: slow, but too simple to be
# wrong, and independent of the reference answers.


def _describe(x: Any) -> str:
    if x is None:
        return "None"
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor {x.dtype} of shape {tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"np.ndarray {x.dtype} of shape {x.shape}"
    return type(x).__name__


def _loop_distance(x: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """||x_i - x_j||, and a constant 0 for a row and itself (so its gradient is 0, never NaN)."""
    return x.new_zeros(()) if i == j else torch.linalg.vector_norm(x[i] - x[j])


def _loop_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every pair of rows, one pair at a time: (N, D) -> (N, N)."""
    n = x.shape[0]
    return torch.stack([torch.stack([_loop_distance(x, i, j) for j in range(n)]) for i in range(n)])


def _unchanged(run: Any, *inputs: torch.Tensor) -> None:
    """Run ``run()`` and fail when it changed any of ``inputs`` in place (what it raises, other cases report)."""
    before = [t.clone() for t in inputs]
    try:
        run()
    except Exception:  # learner code may raise anything; only the inputs matter here
        pass
    changed = [k for k, (t, b) in enumerate(zip(inputs, before)) if not torch.equal(t, b)]
    check(not changed, expected="the inputs unchanged",
          got=f"argument {changed[0] + 1} was modified in place" if changed else "",
          hint="don't modify the inputs in place (`-=`, `/=`, `.pow_()`, `.fill_diagonal_()` on them): "
               "compute new tensors")


def _broadcast_error(error: Exception) -> bool:
    """A RuntimeError from two tensors whose shapes do not broadcast."""
    return isinstance(error, RuntimeError) and "must match the size" in str(error)


def _labels_error_hint(error: Exception) -> str | None:
    if _broadcast_error(error):
        return ("the label masks must be (B, B), like the distances: compare every pair of labels, "
                "labels[:, None] == labels[None, :]")
    return None


def _first_hint(got: float, want: float, candidates: list[tuple[float, str]], default: str,
                atol: float = 1e-5) -> str:
    """The hint of the first plausible mistake whose value the answer reproduces.

    A mistake that gives the right value on this input says nothing about the answer: it is skipped.
    """
    for value, hint in candidates:
        if abs(value - want) > atol and abs(got - value) <= atol:
            return hint
    return default


# --------------------------------------------------------------------------- pairwise_distances

_SQRT_HINT = ("the gradient of sqrt at 0 is infinite (NaN after the chain rule): clamp the squared distances "
              "before the square root (e.g. .clamp_min(1e-12)) and set the pairs whose squared distance is 0 "
              "to exactly 0")


def _pairwise_out(fn: Any, x: torch.Tensor) -> torch.Tensor:
    out = fn(x)
    n, d = x.shape
    if isinstance(out, np.ndarray):
        fail(f"a torch tensor ({n}, {n})", _describe(out),
             "return a torch tensor: NumPy cuts the autograd graph, so the loss could not train the encoder")
    if not isinstance(out, torch.Tensor):
        fail(f"a torch tensor ({n}, {n})", _describe(out),
             "the function returns None: replace the None placeholder and return the distances" if out is None
             else "return the (N, N) tensor of distances")
    if tuple(out.shape) != (n, n):
        hint = ("one distance per pair of rows: (N, N); a (D, D) result compares the columns"
                if tuple(out.shape) == (d, d) else "one distance per pair of rows: embeddings (N, D) -> (N, N)")
        fail((n, n), tuple(out.shape), hint)
    return out


def _pairwise_value_hint(got: torch.Tensor, x: torch.Tensor, want: torch.Tensor, off: torch.Tensor) -> str:
    def close(other: torch.Tensor) -> bool:
        return torch.allclose(got[off], other[off], atol=1e-4)

    unit = torch.nn.functional.normalize(x, dim=1)
    cosine = unit @ unit.T
    if close(want ** 2):
        return "these are squared distances: take the square root"
    if close(1 - cosine) or close(cosine):
        return "use the Euclidean distance, not cosine similarity or cosine distance"
    if close(_loop_distances(unit)):
        return "compute the distances of the embeddings as given: don't normalise them first"
    if close((x[:, None] - x[None]).abs().sum(dim=2)):
        return "use the Euclidean distance (square root of the sum of squares), not the Manhattan distance"
    return "distances[i, j] is the Euclidean distance ||x_i - x_j|| between rows i and j"


def _pairwise_case_shape(fn):
    _pairwise_out(fn, torch.randn(5, 3))


def _pairwise_case_values(fn):
    x = torch.randn(6, 4, dtype=torch.float64) * 2
    got, want = _pairwise_out(fn, x).detach().to(torch.float64), _loop_distances(x)
    off = ~torch.eye(6, dtype=torch.bool)  # the diagonal has a case of its own
    check(torch.allclose(got[off], want[off], atol=1e-5), expected="the distances of a loop over every pair",
          got=f"max abs difference {(got[off] - want[off]).abs().max().item():.3g}",
          hint=_pairwise_value_hint(got, x, want, off))


def _pairwise_case_dtype(fn):
    for dtype in (torch.float64, torch.float32):
        got = _pairwise_out(fn, torch.randn(4, 3, dtype=dtype))
        check(got.dtype == dtype, expected=f"{dtype} for {dtype} embeddings", got=str(got.dtype),
              hint="keep the embeddings' dtype: no .float(), .double() or NumPy round trip")


def _pairwise_case_diagonal(fn):
    for n, d in ((7, 5), (40, 16)):  # from 26 rows on, torch.cdist switches to a faster formula that rounds
        got = _pairwise_out(fn, torch.randn(n, d) * 3).detach()
        diagonal = got.diagonal()
        if (diagonal == 0).all():
            continue
        worst = diagonal.abs().max().item()
        hint = ("the distance of a row to itself must be exactly 0: sqrt(x + eps) gives sqrt(eps) there, and "
                "torch.cdist or |a|^2 + |b|^2 - 2ab leave rounding errors. Clamp instead of adding eps, and set "
                "the diagonal to 0" if worst < 0.1 else "distances[i, i] is the distance of row i to itself: 0")
        fail(f"a diagonal of exact zeros ({n} rows)", f"{int((diagonal != 0).sum())} non-zero, up to {worst:.3g}", hint)


def _pairwise_grad(fn, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The gradient of sum(weights * fn(x)) with respect to x."""
    x = x.clone().requires_grad_(True)
    out = _pairwise_out(fn, x)
    check(out.requires_grad, expected="distances that carry gradients", got="no autograd graph",
          hint="compute the distances with torch operations on the embeddings, without .detach(), "
               "torch.no_grad() or NumPy: the loss backpropagates through them")
    (out * weights.to(out.dtype)).sum().backward()
    check(x.grad is not None, expected="a gradient for the embeddings", got="None",
          hint="the distances must be computed from the embeddings passed in")
    check(torch.isfinite(x.grad).all(), expected="finite gradients", got="NaN or inf in the gradient", hint=_SQRT_HINT)
    return x.grad


def _pairwise_case_finite(fn):
    _pairwise_grad(fn, torch.randn(5, 3), torch.rand(5, 5))  # the diagonal: every row is at distance 0 of itself


def _pairwise_case_gradients(fn):
    x, weights = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 5, dtype=torch.float64)
    got = _pairwise_grad(fn, x, weights).to(torch.float64)
    ref = x.clone().requires_grad_(True)
    (_loop_distances(ref) * weights).sum().backward()
    check(torch.allclose(got, ref.grad, atol=1e-4), expected="the gradients of a loop over every pair",
          got=f"max abs difference {(got - ref.grad).abs().max().item():.3g}",
          hint="the distances must be differentiable functions of the embeddings: no rounding, no constants "
               "in place of distances other than the zeros")


def _pairwise_case_identical(fn):
    x = torch.randn(5, 3)
    x[3] = x[1]  # two photos with the same embedding: it happens (duplicates in a catalog)
    got = _pairwise_out(fn, x).detach()
    check(got[1, 3].abs() < 1e-3 and got[3, 1].abs() < 1e-3, expected="distance 0 between identical rows",
          got=f"{got[1, 3].item():.3g}", hint="identical rows are at distance 0")
    x_grad = x.clone().requires_grad_(True)
    out = _pairwise_out(fn, x_grad)
    if not out.requires_grad:
        return  # the gradient case reports it
    (out * torch.rand(5, 5)).sum().backward()
    if x_grad.grad is not None and torch.isfinite(x_grad.grad).all():
        return
    distinct = torch.randn(5, 3, requires_grad=True)  # does the diagonal alone already give NaN?
    (_pairwise_out(fn, distinct) * torch.rand(5, 5)).sum().backward()
    diagonal_fine = distinct.grad is not None and torch.isfinite(distinct.grad).all()
    fail("finite gradients", "NaN or inf in the gradient",
         ("two identical rows are at distance 0 too, not only the diagonal: " if diagonal_fine else "") + _SQRT_HINT)


def _pairwise_case_inputs(fn):
    x = torch.randn(6, 4)
    _unchanged(lambda: fn(x), x)


def test_pairwise_distances(pairwise_distances):
    """Grade ``pairwise_distances(embeddings)``: ``(N, D) -> (N, N)`` Euclidean distances, exact zeros on the
    diagonal, finite gradients."""
    fn = pairwise_distances
    cases = [
        Case("pairwise_distances is defined",
             lambda: require_answer(fn, "pairwise_distances", lambda f: f(torch.rand(3, 2)) is None), required=True),
        Case("returns an (N, N) tensor for (5, 3) embeddings", lambda: _pairwise_case_shape(fn), required=True),
        Case("does not modify the embeddings", lambda: _pairwise_case_inputs(fn), required=True),
        Case("distances match a loop over every pair", lambda: _pairwise_case_values(fn)),
        Case("keeps the embeddings' dtype", lambda: _pairwise_case_dtype(fn)),
        Case("exactly 0 on the diagonal (7 and 40 rows)", lambda: _pairwise_case_diagonal(fn)),
        Case("finite gradients (sqrt of 0 on the diagonal)", lambda: _pairwise_case_finite(fn)),
        Case("gradients match a loop over every pair", lambda: _pairwise_case_gradients(fn)),
        Case("identical rows: distance 0 and finite gradients", lambda: _pairwise_case_identical(fn)),
    ]
    return grade("test_pairwise_distances", cases)


# --------------------------------------------------------------------------- batch_hard_triplet_loss


def _loop_loss(x: torch.Tensor, labels: list, margin: float, *, positive: str = "farthest",
               negative: str = "nearest", self_positive: bool = False, average_all: bool = False,
               reduce: str = "mean", hinge: bool = True, squared: bool = False, swap: bool = False,
               normalize: bool = False, active_only: bool = False) -> torch.Tensor:
    """Batch-hard loss, one anchor at a time. The keyword arguments make the plausible mistakes, for hints.

    ``negative="zero"`` is the minimum of a row masked by multiplication: the zeros the mask leaves win it.
    """
    if normalize:
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True)
    n = len(labels)
    terms = []
    for a in range(n):
        d = [_loop_distance(x, a, j) ** 2 if squared else _loop_distance(x, a, j) for j in range(n)]
        pos = [d[p] for p in range(n) if labels[p] == labels[a] and (p != a or self_positive)]
        neg = [d[q] for q in range(n) if labels[q] != labels[a]]
        if not (pos and neg):
            if average_all:
                terms.append(x.new_zeros(()))
            continue
        d_ap = torch.stack(pos).max() if positive == "farthest" else torch.stack(pos).min()
        d_an = {"nearest": lambda: torch.stack(neg).min(), "farthest": lambda: torch.stack(neg).max(),
                "zero": lambda: x.new_zeros(())}[negative]()
        term = (d_an - d_ap if swap else d_ap - d_an) + margin
        terms.append(torch.relu(term) if hinge else term)
    stacked = torch.stack(terms)
    if active_only:
        stacked = stacked[stacked > 0]
    return stacked.mean() if reduce == "mean" else stacked.sum()


def _loop_semi_hard(x: torch.Tensor, labels: list, margin: float, *, per_pair: bool = True) -> torch.Tensor:
    """Semi-hard mining instead of batch-hard: the nearest negative farther than the positive (else the farthest).

    ``per_pair``: every (anchor, positive) pair, as FaceNet mines; else only each anchor's farthest positive.
    """
    n = len(labels)
    terms = []
    for a in range(n):
        d = [_loop_distance(x, a, j) for j in range(n)]
        pos = [p for p in range(n) if labels[p] == labels[a] and p != a]
        neg = [d[q] for q in range(n) if labels[q] != labels[a]]
        if not (pos and neg):
            continue
        if not per_pair:
            pos = [max(pos, key=lambda p: float(d[p]))]
        for p in pos:
            beyond = [dn for dn in neg if dn > d[p]]
            d_an = torch.stack(beyond).min() if beyond else torch.stack(neg).max()
            terms.append(torch.relu(d[p] - d_an + margin))
    return torch.stack(terms).mean()


_LOSS_MISTAKES = [  # (keyword arguments of _loop_loss, hint); the first one the answer matches gives the hint
    ({"negative": "zero"}, "multiplying the distances by the negatives mask leaves zeros where the other items "
                           "were, and the minimum picks them: fill the entries that are not negatives with inf "
                           "(masked_fill) before taking the minimum"),
    ({"active_only": True}, "average over every valid anchor, those whose loss is already 0 included: dividing by "
                            "the active (non-zero) anchors only makes the loss larger than it is"),
    ({"normalize": True}, "compute the loss on the embeddings as they are given: don't L2-normalise them first "
                          "(the kit normalises before it calls your loss)"),
    ({"positive": "nearest"}, "take the *farthest* positive of each anchor (the hardest one), not the nearest"),
    ({"negative": "farthest"}, "take the *nearest* negative of each anchor (the hardest one), not the farthest"),
    ({"positive": "nearest", "negative": "farthest"},
     "batch-hard takes the farthest positive and the nearest negative: you took the easiest of both"),
    ({"reduce": "sum"}, "average over the anchors (mean), don't sum"),
    ({"hinge": False}, "apply the hinge, relu(d(a,p) - d(a,n) + margin): an anchor that already satisfies the "
                       "margin adds 0, not a negative number"),
    ({"margin_sign": -1}, "the margin is added, not subtracted: relu(d(a,p) - d(a,n) + margin)"),
    ({"swap": True}, "the loss is relu(d(a,p) - d(a,n) + margin): positive distance minus negative distance"),
    ({"squared": True}, "use Euclidean distances (pairwise_distances), not squared distances"),
    ({"self_positive": True}, "an anchor is not its own positive: leave out the anchors without another item "
                              "of their label (with itself as positive, d(a,p) = 0 and it still counts)"),
    ({"average_all": True}, "average over the anchors that have a positive and a negative only, not over all "
                            "the anchors"),
]
_SEMI_HARD_HINT = ("that is semi-hard mining (the nearest negative farther than the positive): batch-hard takes "
                   "each anchor's nearest negative of all, even one closer than the positive")
_NAN_LOSS_HINT = ("the loss is NaN, the mean over no anchor at all: no anchor had both a positive and a negative. "
                  "Compare every pair of labels, labels[:, None] == labels[None, :], a (B, B) mask")


def _loss_mistakes(x: torch.Tensor, labels: list, margin: float) -> list[tuple[float, str]]:
    """(value, hint) of every plausible mistake on this batch, in the order the hints are tried."""
    found = []
    for kwargs, hint in _LOSS_MISTAKES:
        kwargs = dict(kwargs)
        sign = kwargs.pop("margin_sign", 1)
        found.append((float(_loop_loss(x, labels, sign * margin, **kwargs)), hint))
    found += [(float(_loop_semi_hard(x, labels, margin, per_pair=per_pair)), _SEMI_HARD_HINT)
              for per_pair in (True, False)]
    return found


# A batch whose classes overlap: most anchors violate the margin, so mistakes that agree on a well-separated
# batch (a subtracted margin and the farthest negative both give 0 there) give different values here.
_PROBE_LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2]


def _probe_batch() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(len(_PROBE_LABELS), 3, generator=generator, dtype=torch.float64)


def _loss_value_hint(fn: Any, got: float, x: torch.Tensor, labels: list, margin: float) -> str:
    """The hint of the first mistake the answer reproduces on this batch and on an overlapping probe batch."""
    if math.isnan(got):
        return _NAN_LOSS_HINT
    default = ("for each anchor with a positive and a negative: relu(farthest positive distance - nearest negative "
               "distance + margin); then the mean")
    want = float(_loop_loss(x, labels, margin))
    probe = _probe_batch()
    try:
        probe_got = float(fn(probe.clone(), torch.tensor(_PROBE_LABELS), margin).detach())
        probe_want = float(_loop_loss(probe, _PROBE_LABELS, margin))
        probe_mistakes = _loss_mistakes(probe, _PROBE_LABELS, margin)
    except Exception:  # the answer does not run on the probe: judge it on the case's batch alone
        return _first_hint(got, want, _loss_mistakes(x, labels, margin), default)
    for (value, hint), (probe_value, _) in zip(_loss_mistakes(x, labels, margin), probe_mistakes):
        here = abs(value - want) > 1e-5 and abs(got - value) <= 1e-5
        there = abs(probe_got - probe_value) <= 1e-5
        if here and there:
            return hint
    return default


def _loss_out(fn: Any, x: torch.Tensor, labels: list, margin: float) -> torch.Tensor:
    out = fn(x, torch.tensor(labels), margin)
    if isinstance(out, torch.Tensor) and out.dim() == 0:
        return out
    if out is None:
        hint = "the function returns None: replace the None placeholder and return the loss"
    elif isinstance(out, torch.Tensor):
        hint = "return one number: the mean over the valid anchors, a tensor of shape ()"
    elif isinstance(out, (float, int)):
        hint = "return the loss tensor itself, not a Python number (no .item()): training calls backward() on it"
    else:
        hint = "return the loss as a scalar tensor"
    fail("a scalar tensor (shape ())", _describe(out), hint)


def _loss_check(fn, x: torch.Tensor, labels: list, margin: float, what: str) -> None:
    got = float(_loss_out(fn, x, labels, margin).detach())
    want = float(_loop_loss(x, labels, margin))
    check(abs(got - want) <= 1e-5, expected=f"{want:.6f} ({what})", got=f"{got:.6f}",
          hint=_loss_value_hint(fn, got, x, labels, margin))


def _clusters(labels: list, spread: float, dim: int = 3) -> torch.Tensor:
    """One random centre per label, points scattered around it: some anchors easy, some hard."""
    centres = {label: torch.randn(dim) * 1.5 for label in sorted(set(labels))}
    return torch.stack([centres[label] + spread * torch.randn(dim) for label in labels]).to(torch.float64)


_BATCH = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]  # every anchor has a positive and a negative
_SINGLES = [0, 0, 1, 1, 1, 2, 3, 0, 4]  # labels 2, 3, 4 have one item: those anchors have no positive


def _loss_case_scalar(fn):
    _loss_out(fn, torch.randn(8, 3), [0, 0, 1, 1, 2, 2, 3, 3], 0.2)


def _loss_case_values(fn):
    x = _clusters(_BATCH, spread=0.6)
    _loss_check(fn, x, _BATCH, 0.5, "every anchor valid, margin 0.5")


def _singles() -> torch.Tensor:
    x = _clusters(_SINGLES, spread=0.6)
    # Two of the lone anchors sit close to another class: their nearest negative is within the margin, so
    # counting them (with d(a, p) = 0) changes the loss.
    x[5] = x[2] + 0.1 * torch.randn(3, dtype=x.dtype)
    x[6] = x[0] + 0.1 * torch.randn(3, dtype=x.dtype)
    return x


def _loss_case_no_positive(fn):
    x = _singles()
    _loss_check(fn, x, _SINGLES, 0.5, "3 of 9 anchors have no positive")


def _loss_case_margin(fn):
    labels = [7, 3, 7, 9, 3, 9, 9, 3]  # any label values, in any order
    x = _clusters(labels, spread=0.5, dim=4)
    for margin in (0.1, 1.5):
        _loss_check(fn, x, labels, margin, f"margin {margin}")


def _loss_case_gradients(fn):
    x = _singles()
    mine, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = _loss_out(fn, mine, _SINGLES, 0.5)
    check(out.requires_grad, expected="a loss that carries gradients", got="no autograd graph",
          hint="compute the loss with torch operations on the embeddings, without .detach(), .item() or NumPy")
    out.backward()
    _loop_loss(ref, _SINGLES, 0.5).backward()
    check(mine.grad is not None and torch.isfinite(mine.grad).all(), expected="finite gradients",
          got="NaN or inf in the gradient" if mine.grad is not None else "None", hint=_SQRT_HINT)
    check(torch.allclose(mine.grad.to(torch.float64), ref.grad, atol=1e-5),
          expected="the gradients of a loop over the anchors",
          got=f"max abs difference {(mine.grad.to(torch.float64) - ref.grad).abs().max().item():.3g}",
          hint="the gradient must flow through the hardest positive and negative distances of the valid anchors")


def _loss_case_duplicates(fn):
    labels = [0, 0, 1, 1, 2, 2]
    x = torch.randn(6, 3)
    x[1] = x[0]  # a positive identical to its anchor
    x[3] = x[4]  # a negative identical to its anchor
    x.requires_grad_(True)
    out = _loss_out(fn, x, labels, 0.3)
    if not out.requires_grad:
        return  # the gradient case reports it
    out.backward()
    check(x.grad is not None and torch.isfinite(x.grad).all(), expected="finite gradients",
          got="NaN or inf in the gradient",
          hint="compute the distances with your pairwise_distances, whose gradients stay finite at distance 0")


def _loss_case_inputs(fn):
    x, labels = torch.randn(8, 3), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    _unchanged(lambda: fn(x, labels, 0.2), x, labels)


def test_batch_hard_triplet_loss(batch_hard_triplet_loss):
    """Grade ``batch_hard_triplet_loss(embeddings, labels, margin)`` against a loop over the anchors."""
    fn = batch_hard_triplet_loss
    cases = [
        Case("batch_hard_triplet_loss is defined",
             lambda: require_answer(fn, "batch_hard_triplet_loss",
                                    lambda f: f(torch.rand(4, 2), torch.tensor([0, 0, 1, 1]), 0.2) is None),
             required=True),
        Case("returns a scalar tensor", lambda: _loss_case_scalar(fn), required=True),
        Case("does not modify its inputs", lambda: _loss_case_inputs(fn), required=True),
        Case("matches a loop over the anchors", lambda: _loss_case_values(fn)),
        Case("leaves out anchors without a positive", lambda: _loss_case_no_positive(fn)),
        Case("other margins and label values", lambda: _loss_case_margin(fn)),
        Case("gradients match a loop over the anchors", lambda: _loss_case_gradients(fn)),
        Case("finite gradients with identical embeddings", lambda: _loss_case_duplicates(fn)),
    ]
    return grade("test_batch_hard_triplet_loss", cases, error_hint=_labels_error_hint)


# --------------------------------------------------------------------------- recall_at_k


def _loop_recall(x: torch.Tensor, labels: list, k: int, *, include_self: bool = False, farthest: bool = False,
                 precision: bool = False, cosine: bool = False, skip_lonely: bool = False,
                 unclipped: bool = False) -> float:
    """Leave-one-out hit rate, one query at a time. The keyword arguments make the plausible mistakes.

    ``unclipped``: the k smallest of a row whose own entry is inf, k not clipped to N - 1: with k >= N the
    query itself is among them.
    """
    rows = x.double().tolist()
    n = len(rows)
    include_self = include_self or (unclipped and k >= n)

    def distance(q: int, j: int) -> float:
        if cosine:  # a smaller "distance" for a larger cosine similarity
            dot = sum(a * b for a, b in zip(rows[q], rows[j]))
            return -dot / (math.hypot(*rows[q]) * math.hypot(*rows[j]))
        return math.dist(rows[q], rows[j])

    score, queries = 0.0, 0
    for q in range(n):
        if skip_lonely and labels.count(labels[q]) == 1:
            continue
        others = [j for j in range(n) if include_self or j != q]
        ranked = sorted(others, key=lambda j: distance(q, j), reverse=farthest)[:k]
        same = [labels[j] == labels[q] for j in ranked]
        score += sum(same) / len(same) if precision else float(any(same))
        queries += 1
    return score / queries


_RECALL_MISTAKES = [  # (keyword arguments of _loop_recall, hint)
    ({"skip_lonely": True}, "a query whose label has no other item in the catalog can never be a hit: count it as "
                            "a miss (the mean over every query), don't leave it out"),
    ({"unclipped": True}, "with k >= N the query itself got into its k nearest: use k = min(k, N - 1)"),
    ({"include_self": True}, "leave the query out of its own results: it is always its own nearest neighbour. "
                             "Set its distance to itself to inf before taking the k nearest"),
    ({"farthest": True}, "you took the k farthest items (topk keeps the largest values by default): take the k "
                         "nearest, topk(k, largest=False)"),
    ({"precision": True}, "count a query as a hit when at least one of its k nearest has its label: that is the "
                          "hit rate; the share of the k that have it is precision@k"),
    ({"cosine": True}, "rank by Euclidean distance, not cosine similarity: they differ when the embeddings have "
                       "different lengths"),
]


def _recall_out(fn: Any, x: torch.Tensor, labels: list, k: int) -> float:
    out = fn(x, torch.tensor(labels), k)
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return float(out)  # the type case reports it; compare the value here
    if isinstance(out, (float, int, np.floating, np.integer)) and not isinstance(out, bool):
        return float(out)
    fail("a Python float", _describe(out),
         "the function returns None: replace the None placeholder and return the hit rate" if out is None
         else "return one number, the share of queries that are hits")


_RECALL_LABELS_HINT = ("compare each query's label with its own neighbours' labels: labels[nearest] is (N, k), "
                       "so compare it with labels[:, None], (N, 1); against labels, (N,), every query meets every "
                       "label")


def _recall_labels_error_hint(error: Exception) -> str | None:
    return _RECALL_LABELS_HINT if _broadcast_error(error) else None


def _compares_every_label(fn: Any, x: torch.Tensor, labels: list) -> bool:
    """True when ``fn`` fails at k=2 with a broadcasting error: its labels lack the [:, None] (at k=1 they broadcast)."""
    try:
        fn(x.clone(), torch.tensor(labels), 2)
    except Exception as e:  # learner code may raise anything
        return _broadcast_error(e)
    return False


def _recall_value_hint(fn: Any, got: float, want: float, x: torch.Tensor, labels: list, k: int,
                       right_at: tuple[int, ...] = ()) -> str:
    """The hint of the first mistake the answer reproduces at ``k``, among those that would also have been right
    at every k in ``right_at`` (where the answer was)."""
    if k == 1 and got == 1.0 and _compares_every_label(fn, x, labels):
        return _RECALL_LABELS_HINT
    candidates = [(_loop_recall(x, labels, k, **kwargs), hint) for kwargs, hint in _RECALL_MISTAKES
                  if all(abs(_loop_recall(x, labels, j, **kwargs) - _loop_recall(x, labels, j)) <= 1e-6
                         for j in right_at)]
    return _first_hint(got, want, candidates, "for each query: its k nearest *other* items by Euclidean distance; "
                                              "a hit if one of them has its label; return the share of hits",
                       atol=1e-6)


def _recall_check(fn, x: torch.Tensor, labels: list, k: int, what: str) -> None:
    got, want = _recall_out(fn, x, labels, k), _loop_recall(x, labels, k)
    check(abs(got - want) <= 1e-6, expected=f"{want:.4f} ({what})", got=f"{got:.4f}",
          hint=_recall_value_hint(fn, got, want, x, labels, k))


def _spread(labels: list, dim: int = 3) -> torch.Tensor:
    """Noisy class centres, every row scaled by its own length: Euclidean and cosine rankings differ."""
    x = _clusters(labels, spread=1.0, dim=dim).float()
    return x * torch.empty(len(labels), 1).uniform_(0.3, 3.0)


_QUERIES = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3]


def _recall_case_float(fn):
    out = fn(_spread(_QUERIES), torch.tensor(_QUERIES), 1)
    check(isinstance(out, float), expected="a Python float", got=_describe(out),
          hint="convert the result with .item(): the notebook prints and compares plain numbers"
          if isinstance(out, torch.Tensor) else "return the share of hits as a float")


def _recall_case_p_at_1(fn):
    _recall_check(fn, _spread(_QUERIES), _QUERIES, 1, "k=1, i.e. P@1")


def _recall_case_hit_rate(fn):
    labels = [5, 2, 5, 9, 2, 9, 9, 2, 5, 2, 9]  # any label values, in any order
    x = _spread(labels, dim=4)
    for k in (3, 5):
        _recall_check(fn, x, labels, k, f"k={k}")


def _recall_case_duplicates(fn):
    labels = [0, 1, 0, 1, 2, 2, 0, 1]
    x = _spread(labels)
    # Two pairs of duplicates of different labels: each is the other's nearest item, a miss for both. Far from
    # the rest, so that no other query has a tie between two items of different labels among its nearest.
    x[0] = x[1] = torch.tensor([20.0, -20.0, 20.0])
    x[2] = x[5] = torch.tensor([-20.0, 20.0, -20.0])
    got, want = _recall_out(fn, x, labels, 1), _loop_recall(x, labels, 1)
    check(abs(got - want) <= 1e-6, expected=f"{want:.4f} (k=1, two items have a duplicate of another label)",
          got=f"{got:.4f}",
          hint="the query was counted as its own neighbour when another item has the same embedding (a tie at "
               "distance 0): dropping the first column of the sorted distances assumes the query comes first. "
               "Set each query's distance to itself to inf instead")


def _recall_case_large_k(fn):
    labels = [0, 0, 1, 1, 1, 2]  # label 2 has one item: no k can make it a hit
    x = _spread(labels)
    n = len(labels)
    right_at = []
    for k in (n - 1, n, n + 3):
        try:
            got = _recall_out(fn, x, labels, k)
        except (RuntimeError, IndexError, ValueError) as e:
            fail(f"k={k} to run on {n} items", f"{type(e).__name__}: {e}",
                 _RECALL_LABELS_HINT if _broadcast_error(e) else
                 "k can be larger than the N - 1 other items: use k = min(k, N - 1)")
        want = _loop_recall(x, labels, k)
        check(abs(got - want) <= 1e-6, expected=f"{want:.4f} (k={k}, {n} items: all the others)", got=f"{got:.4f}",
              hint=_recall_value_hint(fn, got, want, x, labels, k, tuple(right_at)))
        right_at.append(k)


def _recall_case_euclidean(fn):
    # 2-D points: the query at (1, 0); a same-label item in the same direction but far, (6, 0); an item of
    # another label close by but at an angle, (1, 1). Euclidean: (1, 1) is nearer; cosine: (6, 0) is.
    x = torch.tensor([[1.0, 0.0], [6.0, 0.0], [1.0, 1.0], [0.0, 5.0]])
    labels = [0, 0, 1, 1]
    got, want = _recall_out(fn, x, labels, 1), _loop_recall(x, labels, 1)
    hint = ("rank by Euclidean distance, not cosine similarity: they differ when the embeddings have different "
            "lengths" if abs(got - _loop_recall(x, labels, 1, cosine=True)) <= 1e-6
            else "for each query: its nearest other item by Euclidean distance")
    check(abs(got - want) <= 1e-6, expected=f"{want:.4f}", got=f"{got:.4f}", hint=hint)


def _recall_case_inputs(fn):
    x, labels = _spread(_QUERIES), torch.tensor(_QUERIES)
    _unchanged(lambda: fn(x, labels, 3), x, labels)


def test_recall_at_k(recall_at_k):
    """Grade ``recall_at_k(embeddings, labels, k)``: the leave-one-out hit rate, a Python float."""
    fn = recall_at_k
    cases = [
        Case("recall_at_k is defined",
             lambda: require_answer(fn, "recall_at_k",
                                    lambda f: f(torch.rand(4, 2), torch.tensor([0, 0, 1, 1]), 1) is None),
             required=True),
        Case("does not modify its inputs", lambda: _recall_case_inputs(fn), required=True),
        Case("returns a Python float", lambda: _recall_case_float(fn)),
        Case("P@1 (k=1) matches a loop over the queries", lambda: _recall_case_p_at_1(fn)),
        Case("k=3 and k=5: a hit rate, other label values", lambda: _recall_case_hit_rate(fn)),
        Case("a query is not its own neighbour, even with a duplicate", lambda: _recall_case_duplicates(fn)),
        Case("k of N - 1 and more: all the other items", lambda: _recall_case_large_k(fn)),
        Case("ranks by Euclidean distance", lambda: _recall_case_euclidean(fn)),
    ]
    return grade("test_recall_at_k", cases, error_hint=_recall_labels_error_hint)


# --------------------------------------------------------------------------- ProjectionHead

_HEAD_DIM = 6  # not 64: the head must take its size from `dim`
_HEAD_ERROR_HINT = ("the head's layer must fit any size: nn.Linear(dim, dim) with the `dim` passed in, not a "
                    "fixed 64")


def _head_error_hint(error: Exception) -> str | None:
    text = str(error)
    if isinstance(error, RuntimeError) and ("mat1 and mat2" in text or "size" in text or "shape" in text):
        return _HEAD_ERROR_HINT
    return None


def _head_linear(ProjectionHead, dim: int) -> nn.Linear:
    """``ProjectionHead(dim)``, checked to be a module whose ``linear`` is ``nn.Linear(dim, dim)``."""
    head = ProjectionHead(dim)
    check(isinstance(head, nn.Module), expected="an nn.Module", got=type(head).__name__,
          hint="ProjectionHead should subclass nn.Module and call super().__init__()")
    linear = getattr(head, "linear", None)
    check(isinstance(linear, nn.Linear), expected="an attribute `linear`, an nn.Linear",
          got=_describe(linear) if linear is None or isinstance(linear, torch.Tensor) else type(linear).__name__,
          hint="self.linear = nn.Linear(dim, dim): one linear layer, no activation, no Sequential around it")
    shape = (linear.in_features, linear.out_features)
    check(shape == (dim, dim), expected=f"nn.Linear({dim}, {dim}) for ProjectionHead({dim})",
          got=f"nn.Linear({shape[0]}, {shape[1]})",
          hint="use the `dim` passed in for both sizes, not a fixed number like 64" if 64 in shape
          else "the head maps dim numbers to dim numbers: nn.Linear(dim, dim)")
    return head


def _head_case_builds(ProjectionHead):
    for dim in (_HEAD_DIM, 64):
        _head_linear(ProjectionHead, dim)


def _head_case_inputs(ProjectionHead):
    head = _head_linear(ProjectionHead, _HEAD_DIM)
    x = torch.randn(4, _HEAD_DIM)
    _unchanged(lambda: head(x), x)


def _head_case_identity(ProjectionHead):
    linear = _head_linear(ProjectionHead, _HEAD_DIM).linear
    eye = torch.eye(_HEAD_DIM)
    check(torch.equal(linear.weight.detach(), eye), expected="linear.weight == the identity matrix at the start",
          got=f"max abs difference {(linear.weight.detach() - eye).abs().max().item():.3g}",
          hint="start the weight as the identity (nn.init.eye_(self.linear.weight)): before training the head "
               "changes nothing, and the encoder searches exactly as the backbone alone")
    check(linear.bias is not None, expected="a bias, zero at the start", got="no bias (bias=False)",
          hint="keep nn.Linear's bias and set it to zero (nn.init.zeros_(self.linear.bias))")
    check(torch.equal(linear.bias.detach(), torch.zeros(_HEAD_DIM)), expected="linear.bias == 0 at the start",
          got=f"max abs value {linear.bias.detach().abs().max().item():.3g}",
          hint="start the bias at zero (nn.init.zeros_(self.linear.bias)): nn.Linear draws it at random")


def _head_out(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = head(x.clone())  # the learner's copy
    if not isinstance(out, torch.Tensor):
        fail(f"a tensor {tuple(x.shape)}", _describe(out),
             "forward returns None: replace the None placeholder and return the normalised output" if out is None
             else "forward should return a tensor")
    check(out.shape == x.shape, expected=tuple(x.shape), got=tuple(out.shape),
          hint="(B, dim) -> (B, dim): the linear map keeps the size, and normalising keeps the shape")
    return out


def _head_value_hint(got: torch.Tensor, x: torch.Tensor, linear: nn.Linear, default: str) -> str:
    """The hint of the first mistake whose output the answer reproduces (a mistake that is right here is skipped)."""
    normalize = torch.nn.functional.normalize
    mapped = linear(x)
    want = normalize(mapped, dim=1)
    relu_hint = ("no activation: a ReLU sets every negative number to 0 and keeps the embeddings in one orthant of "
                 "the sphere, the corner the head is there to leave")
    input_hint = "normalise the output of the linear map, not its input: the map comes first, then the normalisation"
    candidates = [
        (mapped, "normalise the output: divide each row by its length (F.normalize(..., dim=1))"),
        (normalize(torch.relu(mapped), dim=1), relu_hint),
        (torch.relu(want), relu_hint),
        (normalize(mapped, dim=0), "normalise each row (dim=1), one embedding at a time, not each column (dim=0)"),
        (linear(normalize(x, dim=1)), input_hint),
        (normalize(linear(normalize(x, dim=1)), dim=1), input_hint),
        (normalize(x @ linear.weight + linear.bias, dim=1),
         "x @ weight multiplies by the transposed matrix: call self.linear(x)"),
    ]
    for value, hint in candidates:
        if not torch.allclose(value, want, atol=1e-5) and torch.allclose(got, value, atol=1e-5):
            return hint
    return default


def _head_case_values(ProjectionHead):
    for batch, dim in ((5, _HEAD_DIM), (3, 64)):
        head = _head_linear(ProjectionHead, dim)
        with torch.no_grad():  # a trained head: any matrix and bias, what training makes of the identity
            head.linear.weight.copy_(torch.randn(dim, dim))
            head.linear.bias.copy_(torch.randn(dim))
        x = torch.randn(batch, dim)
        with torch.no_grad():
            got = _head_out(head, x)
            want = torch.nn.functional.normalize(head.linear(x), dim=1)
        check(torch.allclose(got, want, atol=1e-5),
              expected=f"F.normalize(linear(x), dim=1) for a ({batch}, {dim}) batch and a trained linear",
              got=f"max abs difference {(got - want).abs().max().item():.3g}",
              hint=_head_value_hint(got, x, head.linear, "forward(x) is the linear map, then L2 normalisation of "
                                                         "each row: F.normalize(self.linear(x), dim=1)"))


def _head_case_start(ProjectionHead):
    head = _head_linear(ProjectionHead, _HEAD_DIM)
    x = torch.randn(4, _HEAD_DIM)
    with torch.no_grad():
        got = _head_out(head, x)
    want = torch.nn.functional.normalize(x, dim=1)
    with torch.no_grad():
        hint = _head_value_hint(got, x, head.linear, "at the start the head must only normalise: weight the "
                                                     "identity, bias 0, no activation")
    check(torch.allclose(got, want, atol=1e-5), expected="x / ||x|| for each row: the identity, normalised",
          got=f"max abs difference {(got - want).abs().max().item():.3g}", hint=hint)


def _head_case_gradients(ProjectionHead):
    head = _head_linear(ProjectionHead, _HEAD_DIM)
    x = torch.randn(4, _HEAD_DIM)
    weights = torch.randn(4, _HEAD_DIM)
    out = _head_out(head, x)
    check(out.requires_grad, expected="an output that carries gradients", got="no autograd graph",
          hint="don't detach the output or compute it under torch.no_grad(): the loss trains the head through it")
    (out * weights).sum().backward()
    reference = nn.Linear(_HEAD_DIM, _HEAD_DIM)
    with torch.no_grad():
        reference.weight.copy_(torch.eye(_HEAD_DIM))
        reference.bias.zero_()
    (torch.nn.functional.normalize(reference(x), dim=1) * weights).sum().backward()
    for name in ("weight", "bias"):
        got, want = getattr(head.linear, name).grad, getattr(reference, name).grad
        check(got is not None and got.abs().sum() > 0, expected=f"a gradient for linear.{name}",
              got="None" if got is None else "zeros",
              hint=f"the output must come from self.linear, so that training moves its {name}")
        check(torch.allclose(got, want, atol=1e-5),
              expected=f"the gradient of linear.{name} of F.normalize(linear(x), dim=1)",
              got=f"max abs difference {(got - want).abs().max().item():.3g}",
              hint="the gradient follows the output: make the output right first (the cases above)")


def test_projection_head(ProjectionHead):
    """Grade ``ProjectionHead(dim)``: ``nn.Linear(dim, dim)`` from the identity, then L2 normalisation of each row."""
    H = ProjectionHead
    cases = [
        Case("ProjectionHead is defined",
             lambda: require_answer(H, "ProjectionHead", lambda h: is_stub_instance(h(_HEAD_DIM), ("linear",))),
             required=True),
        Case("linear is nn.Linear(dim, dim) (dim 6 and 64)", lambda: _head_case_builds(H), required=True),
        Case("does not modify its input", lambda: _head_case_inputs(H), required=True),
        Case("starts as the identity with a zero bias", lambda: _head_case_identity(H)),
        Case("at the start, each row is only normalised", lambda: _head_case_start(H)),
        Case("a trained head: the linear map, then each row normalised", lambda: _head_case_values(H)),
        Case("gradients reach the weight and the bias", lambda: _head_case_gradients(H)),
    ]
    return grade("test_projection_head", cases, layers=True, error_hint=_head_error_hint)
