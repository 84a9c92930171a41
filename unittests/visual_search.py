"""Graders of notebook 06: ``get_query_img_embedding``, ``get_embeddings`` and ``find_closest``."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from unittests.framework import Case, check, fail, grade, require_answer

__all__ = ["test_find_closest", "test_get_embeddings", "test_query_embedding"]

_ATOL = 1e-5


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"np.ndarray {x.dtype} of shape {x.shape}"
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor of shape {tuple(x.shape)}"
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of {len(x)}"
    return type(x).__name__


def _not_array_hint(x: Any, list_hint: str = "return one NumPy array, not a list") -> str:
    if x is None:
        return "the function returns None: replace the None placeholders and return the result"
    if isinstance(x, torch.Tensor):
        return "return a NumPy array: convert the tensor with .cpu().numpy()"
    if isinstance(x, (list, tuple)):
        return list_hint
    return "return a NumPy array"


# Errors that plausible mistakes raise, and what each one means here.
_ERROR_HINTS = [
    ("4D input", "add a batch dimension: transform(img).unsqueeze(0) has shape (1, 3, H, W)"),
    ("need at least one array", "no batch was embedded: don't use drop_last=True (a dataset smaller than "
                                "batch_size then has no full batch)"),
    ("inhomogeneous", "the last batch is smaller than the others: np.concatenate the batches (not np.array)"),
    ("argument: 'batch_size'", "give batch_size a default value: def get_embeddings(..., batch_size=64)"),
    ("argument: 'k'", "give k a default of 5: def find_closest(embeddings, query_embedding, k=5)"),
    ("requires grad", "run the encoder under torch.no_grad() before converting to NumPy"),
    ("0-dimensional", None),  # filled in below: needs _NO_AXIS
]
_NO_AXIS = ("norm per row: axis=1. np.linalg.norm(embeddings - query_embedding, axis=1) gives one distance per "
            "catalog item; without axis it is one number, the norm of the whole matrix")
_ERROR_HINTS[-1] = ("0-dimensional", _NO_AXIS)


def _call(fn, *args, **kwargs):
    """Call the learner's function; turn the errors of well-known mistakes into a specific hint."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        for pattern, hint in _ERROR_HINTS:
            if pattern in str(e):
                fail("no exception", f"{type(e).__name__}: {e}", hint)
        raise


def _returns_none(run) -> bool:
    """True when ``run()`` gives what the untouched stub gives: None, or the error of calling a method on it."""
    try:
        return run() is None
    except AttributeError as e:  # the stub's `return embedding.cpu().numpy()` with embedding still None
        return "'NoneType' object has no attribute" in str(e)


# --------------------------------------------------------------------------- encoders

class _Recorder:
    """Forward hook that notes, for each call, whether the module was training and gradients were on."""

    def __init__(self, module: nn.Module) -> None:
        self.calls: list[tuple[bool, bool]] = []
        module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.calls.append((module.training, torch.is_grad_enabled()))


def _encoder(dim: int = 6) -> nn.Module:
    """Tiny encoder ``(B, 3, H, W) -> (B, dim)`` whose output differs in train mode (BatchNorm, Dropout)."""
    enc = nn.Sequential(
        nn.Conv2d(3, 4, kernel_size=3), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, dim),
    )
    enc[1].running_mean.fill_(0.3)  # eval-mode statistics far from any batch's, so a missing .eval() shows
    enc[1].running_var.fill_(4.0)
    return enc.train()  # as a learner's encoder is after training


def _reference(encoder: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The embeddings a correct answer gives, one image at a time, on a copy in eval mode."""
    enc = copy.deepcopy(encoder).eval()
    with torch.no_grad():
        return torch.cat([enc(x[None]) for x in images]).numpy()  # (N, D)


def _as_array(got: Any, want: np.ndarray) -> np.ndarray:
    """The answer as an array (tensors and lists too), so that value cases report values, not types."""
    if isinstance(got, torch.Tensor):
        return got.detach().cpu().numpy()
    try:
        return np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        fail(f"an array of shape {want.shape}", _describe(got), "return a NumPy array of the embeddings")


def _compare(got: Any, want: np.ndarray, recorder: _Recorder, what: str, shape_hint: str) -> None:
    arr = _as_array(got, want)
    check(arr.shape == want.shape, expected=f"shape {want.shape}", got=_describe(got), hint=shape_hint)
    if np.allclose(arr, want, atol=_ATOL):
        return
    if any(training for training, _ in recorder.calls):
        hint = "call encoder.eval() before embedding: BatchNorm and Dropout behave differently in training mode"
    else:
        hint = what
    fail("the encoder's embeddings (eval mode)", f"max abs difference {np.abs(arr - want).max():.3g}", hint)


# --------------------------------------------------------------------------- get_query_img_embedding

# Not the course's val_transform: an answer must apply the transform it is given.
_QUERY_TRANSFORM = T.Compose([T.Resize((12, 12)), T.ToTensor(), T.Normalize((0.2, 0.3, 0.4), (0.5, 0.6, 0.7))])


def _query_image(height: int = 20, width: int = 24, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)  # (H, W, 3) uint8: an RGB image


def _query_setup(dim: int = 6, seed: int = 0):
    enc, img = _encoder(dim), _query_image(seed=seed)
    want = _reference(enc, _QUERY_TRANSFORM(img)[None])  # (1, D), before the answer can touch the encoder
    return enc, img, want, _Recorder(enc)


def _query_shape_hint(out: Any, want: np.ndarray) -> str:
    if getattr(out, "shape", None) == want.shape[1:]:
        return "keep the batch dimension: (1, D), not (D,)"
    return "transform the image, add a batch dimension with unsqueeze(0), and return encoder(x) as is"


def _query_case_runs(get_query_img_embedding):
    enc, img, _, _ = _query_setup()
    _call(get_query_img_embedding, enc, copy.deepcopy(_QUERY_TRANSFORM), img, "cpu")


def _query_case_type(get_query_img_embedding):
    enc, img, want, _ = _query_setup()
    out = _call(get_query_img_embedding, enc, copy.deepcopy(_QUERY_TRANSFORM), img, "cpu")
    check(isinstance(out, np.ndarray), expected="np.ndarray", got=_describe(out),
          hint=_not_array_hint(out, "return the NumPy array itself (.cpu().numpy()), not a list"))
    check(out.shape == want.shape, expected=f"shape {want.shape} (one query, D = {want.shape[1]})",
          got=_describe(out), hint=_query_shape_hint(out, want))
    check(np.issubdtype(out.dtype, np.floating), expected="a float array", got=str(out.dtype),
          hint="return the embedding values, not indices or labels")


def _query_case_eval(get_query_img_embedding):
    enc, img, _, rec = _query_setup()
    _call(get_query_img_embedding, enc, copy.deepcopy(_QUERY_TRANSFORM), img, "cpu")
    check(rec.calls, expected="the encoder to be called", got="no call", hint="run the encoder on the query image")
    check(not any(training for training, _ in rec.calls), expected="the encoder in eval mode", got="training mode",
          hint="call encoder.eval() before embedding: BatchNorm and Dropout behave differently in training mode")


def _query_case_no_grad(get_query_img_embedding):
    enc, img, _, rec = _query_setup()
    _call(get_query_img_embedding, enc, copy.deepcopy(_QUERY_TRANSFORM), img, "cpu")
    check(rec.calls, expected="the encoder to be called", got="no call", hint="run the encoder on the query image")
    check(not any(grad for _, grad in rec.calls), expected="the encoder run under torch.no_grad()",
          got="gradients enabled", hint="wrap the forward pass in `with torch.no_grad():` (no graph, less memory)")


def _query_case_values(get_query_img_embedding, dim: int, seed: int, device: Any):
    enc, img, want, rec = _query_setup(dim, seed)
    out = _call(get_query_img_embedding, enc, copy.deepcopy(_QUERY_TRANSFORM), img, device)
    _compare(out, want, rec, "apply the `transform` argument to the image (not another transform), add the batch "
                             "dimension with unsqueeze(0) and return encoder(x)", _query_shape_hint(out, want))


def _query_untouched(get_query_img_embedding) -> bool:
    return _returns_none(lambda: get_query_img_embedding(_encoder(), copy.deepcopy(_QUERY_TRANSFORM), _query_image(),
                                                         "cpu"))


def test_query_embedding(get_query_img_embedding):
    """Grade ``get_query_img_embedding(encoder, transform, img, device) -> np.ndarray (1, D)``."""
    fn = get_query_img_embedding
    cases = [
        Case("get_query_img_embedding is defined",
             lambda: require_answer(fn, "get_query_img_embedding", _query_untouched), required=True),
        Case("runs on a PIL image", lambda: _query_case_runs(fn), required=True),
        Case("returns a float NumPy array of shape (1, D)", lambda: _query_case_type(fn)),
        Case("puts the encoder in eval mode", lambda: _query_case_eval(fn)),
        Case("runs without gradients", lambda: _query_case_no_grad(fn)),
        Case("equals encoder(transform(img)) in eval mode", lambda: _query_case_values(fn, 6, 0, "cpu")),
        Case("device as torch.device, another encoder and image",
             lambda: _query_case_values(fn, 3, 1, torch.device("cpu"))),
    ]
    return grade("test_query_embedding", cases)


# --------------------------------------------------------------------------- get_embeddings

class _FakeTensorDataset:
    """Map-style dataset of ``(image_tensor, label)``, like ImageFolder with a transform."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, 8, 8, generator=g)
        self.targets = [i % 3 for i in range(n)]
        self.classes = ["a", "b", "c"]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        return self.images[index], self.targets[index]


def _embeddings_setup(n: int = 10, dim: int = 6):
    enc, data = _encoder(dim), _FakeTensorDataset(n)
    return enc, data, _reference(enc, data.images), _Recorder(enc)


def _shape_hint(out: Any, want: tuple, batch_size: int) -> str:
    n = want[0]
    if not isinstance(out, np.ndarray):
        return "return one NumPy array (N, D): np.concatenate the per-batch arrays"
    if out.ndim == 2 and out.shape[1] == want[1]:
        if out.shape[0] == n - n % batch_size:
            return "the last, smaller batch is missing: don't use drop_last=True"
        if out.shape[0] in (batch_size, n % batch_size):
            return "collect every batch's embeddings (append to a list, then np.concatenate), not only the last"
    if out.ndim == 3:
        return "concatenate the batches along the first axis: (N, D), not (batches, B, D)"
    return "return one row per image: (N, D)"


def _embeddings_case_runs(get_embeddings):
    enc, data, _, _ = _embeddings_setup()
    _call(get_embeddings, enc, data, "cpu", batch_size=4)


def _embeddings_case_type(get_embeddings):
    enc, data, want, _ = _embeddings_setup()
    out = _call(get_embeddings, enc, data, "cpu", batch_size=4)
    check(isinstance(out, np.ndarray), expected="np.ndarray", got=_describe(out),
          hint=_not_array_hint(out, "return one NumPy array (np.concatenate the per-batch arrays), not a list"))
    check(out.shape == want.shape, expected=f"shape {want.shape} (10 images, batch_size=4)", got=_describe(out),
          hint=_shape_hint(out, want.shape, 4))
    check(np.issubdtype(out.dtype, np.floating), expected="a float array", got=str(out.dtype),
          hint="return the embeddings only, not labels")


def _embeddings_case_eval(get_embeddings):
    enc, data, _, rec = _embeddings_setup()
    _call(get_embeddings, enc, data, "cpu", batch_size=4)
    check(rec.calls, expected="the encoder to be called", got="no call", hint="run the encoder on every batch")
    check(not any(training for training, _ in rec.calls), expected="the encoder in eval mode", got="training mode",
          hint="call encoder.eval() before embedding: BatchNorm and Dropout behave differently in training mode")


def _embeddings_case_values(get_embeddings, n: int, dim: int, batch_size: Any, device: Any):
    enc, data, want, rec = _embeddings_setup(n, dim)
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    out = _call(get_embeddings, enc, data, device, **kwargs)
    arr = _as_array(out, want)
    if arr.shape == want.shape and not np.allclose(arr, want, atol=_ATOL):
        # Rows right but in another order: a shuffled loader.
        same_rows = np.allclose(np.sort(arr, axis=0), np.sort(want, axis=0), atol=_ATOL)
        check(not same_rows, expected="row i embeds dataset[i]",
              got="the right rows in another order", hint="use shuffle=False: row i must embed dataset[i]")
    _compare(out, want, rec, "row i should be encoder(dataset[i][0]) in eval mode: use the images, not the "
                             "labels, and a DataLoader with shuffle=False",
             _shape_hint(arr, want.shape, batch_size or len(data)))


def test_get_embeddings(get_embeddings):
    """Grade ``get_embeddings(encoder, dataset, device, batch_size=...) -> np.ndarray (N, D)``."""
    fn = get_embeddings
    cases = [
        Case("get_embeddings is defined",
             lambda: require_answer(fn, "get_embeddings",
                                    lambda f: _returns_none(lambda: f(_encoder(), _FakeTensorDataset(5), "cpu", 4))),
             required=True),
        Case("runs on a dataset of (image, label) pairs", lambda: _embeddings_case_runs(fn), required=True),
        Case("returns a float NumPy array (N, D), N not a multiple of batch_size", lambda: _embeddings_case_type(fn)),
        Case("puts the encoder in eval mode", lambda: _embeddings_case_eval(fn)),
        Case("rows match the encoder, in dataset order", lambda: _embeddings_case_values(fn, 10, 6, 4, "cpu")),
        Case("batch_size=1", lambda: _embeddings_case_values(fn, 5, 6, 1, "cpu")),
        Case("default batch_size, torch.device, another encoder",
             lambda: _embeddings_case_values(fn, 7, 3, None, torch.device("cpu"))),
    ]
    return grade("test_get_embeddings", cases)


# --------------------------------------------------------------------------- find_closest

# Eight catalog embeddings of very different norms and a query. Nearest first by Euclidean
# distance the order is 3, 6, 0, 1, 7, 2, 5, 4 (no ties); cosine similarity, dot product,
# Manhattan distance and "farthest first" each give another order.
_CATALOG = np.array([
    [1.1, 1.65, 0.2],
    [3.5, -0.4, 1.9],
    [-1.8, 0.3, 2.6],
    [1.4, 0.7, 0.3],
    [-4.0, -3.1, -0.5],
    [5.2, 4.9, 0.8],
    [0.2, -0.3, 0.1],
    [2.2, 2.9, 1.7],
], dtype=np.float32)
_QUERY = np.array([[1.1, 0.4, 0.2]], dtype=np.float32)  # (1, D), as get_query_img_embedding returns it


def _euclidean_order(catalog: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.argsort(np.linalg.norm(catalog.astype(np.float64) - query.reshape(1, -1), axis=1), kind="stable")


def _wrong_orders(catalog: np.ndarray, query: np.ndarray) -> dict[str, np.ndarray]:
    q = query.reshape(-1).astype(np.float64)
    c = catalog.astype(np.float64)
    cosine = c @ q / (np.linalg.norm(c, axis=1) * np.linalg.norm(q))
    return {
        "sorted farthest first: argsort is ascending, don't reverse it (or don't negate the distances)":
            _euclidean_order(catalog, query)[::-1],
        "use Euclidean distance (np.linalg.norm(embeddings - query, axis=1)), not cosine similarity":
            np.argsort(-cosine, kind="stable"),
        "use Euclidean distance, not the dot product": np.argsort(-(c @ q), kind="stable"),
        "use Euclidean (L2) distance, not Manhattan (L1)": np.argsort(np.abs(c - q).sum(axis=1), kind="stable"),
    }


def _closest_hint(out: np.ndarray, k: int) -> str:
    for hint, order in _wrong_orders(_CATALOG, _QUERY).items():
        if np.array_equal(out, order[:k]):
            return hint
    return "sort the catalog by Euclidean distance to the query (np.argsort) and keep the first k indices"


def _check_indices(out: Any, k: int) -> np.ndarray:
    if isinstance(out, (int, np.integer)):
        fail(f"an array of {k} indices", f"one index ({out})",
             "argmin/argmax gives one index: sort with np.argsort and keep the first k")
    check(isinstance(out, np.ndarray), expected="np.ndarray", got=_describe(out),
          hint=_not_array_hint(out, "return the NumPy array that np.argsort gives (sliced), not a list"))
    if out.shape != (k,):
        if out.shape == (k + 1,):
            hint = "off by one: keep exactly k indices ([:k])"
        elif out.size == 1 and k > 1:
            hint = f"a single index: were the distances one number? {_NO_AXIS}"
        elif out.shape == ():
            hint = "argmin/argmax gives one index: sort with np.argsort and keep the first k"
        elif out.ndim == 2 and out.size == k:
            hint = "return a flat array of shape (k,): compute distances of shape (N,) (e.g. norm over axis=1)"
        else:
            hint = "return the k nearest indices as an array of shape (k,)"
        fail(f"shape ({k},)", _describe(out), hint)
    check(np.issubdtype(out.dtype, np.integer), expected="integer indices", got=str(out.dtype),
          hint="return the indices (np.argsort), not the distances")
    return out


def _closest_case(find_closest, query: np.ndarray, k: Any):
    catalog, query = _CATALOG.copy(), query.copy()  # the learner's to modify: the grader's own stay intact
    out = _call(find_closest, catalog, query) if k is None else _call(find_closest, catalog, query, k=k)
    if not (np.array_equal(catalog, _CATALOG) and np.array_equal(query.reshape(_QUERY.shape), _QUERY)):
        fail("the embeddings and the query unchanged", "find_closest changed the embeddings passed in",
             "find_closest changed the embeddings passed in (e.g. `embeddings -= query_embedding`): later cells "
             "search that catalog again; compute `embeddings - query_embedding` into a new array")
    k = 5 if k is None else k
    out = _check_indices(out, k)
    want = _euclidean_order(_CATALOG, _QUERY)[:k]
    check(np.array_equal(out, want), expected=want.tolist(), got=out.tolist(), hint=_closest_hint(out, k))


def test_find_closest(find_closest):
    """Grade ``find_closest(embeddings, query_embedding, k=5)``: k indices, nearest first (Euclidean)."""
    fn = find_closest
    n = len(_CATALOG)
    cases = [
        Case("find_closest is defined",
             lambda: require_answer(fn, "find_closest",
                                    lambda f: _returns_none(lambda: f(_CATALOG.copy(), _QUERY.copy(), 3))),
             required=True),
        Case("returns k integer indices as a NumPy array",
             lambda: _check_indices(_call(fn, _CATALOG.copy(), _QUERY.copy(), k=3), 3), required=True),
        Case("nearest first by Euclidean distance (query (1, D), k=3)", lambda: _closest_case(fn, _QUERY, 3)),
        Case("query of shape (D,)", lambda: _closest_case(fn, _QUERY[0], 3)),
        Case("k=1 gives the single nearest", lambda: _closest_case(fn, _QUERY, 1)),
        Case(f"k=N ranks the whole catalog ({n} items)", lambda: _closest_case(fn, _QUERY, n)),
        Case("k defaults to 5", lambda: _closest_case(fn, _QUERY, None)),
    ]
    return grade("test_find_closest", cases)
