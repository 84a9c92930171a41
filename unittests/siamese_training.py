"""Graders of notebook 05: ``SiameseEncoder`` and ``SiameseNetwork``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from helper_utils.reference import MobileNetBackbone
from unittests.framework import Case, check, fail, grade, is_stub_instance, require_answer

__all__ = ["test_siamese_encoder", "test_siamese_network"]

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
    return grade("test_siamese_encoder", cases)


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
