"""Embeddings, exact k-nearest-neighbour search and retrieval metrics (notebook 06 reference answers).

Three layers, kept apart:

* plumbing that runs a model: :func:`get_query_img_embedding`, :func:`get_embeddings`;
* search: :func:`knn` (batched, exact, Euclidean) and :func:`find_closest` (one query);
* metrics under leave-one-out on a catalog, where every item queries all the others:
  :func:`retrieval_metrics` and the single-number helpers :func:`precision_at_1`,
  :func:`recall_at_k`, :func:`r_precision`, :func:`map_at_r`.

The metric maths works on a boolean *match matrix*: row ``i`` lists, nearest first, whether
each other catalog item has query ``i``'s label. R-Precision and mAP@R follow Musgrave,
Belongie and Lim, "A Metric Learning Reality Check" (ECCV 2020).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from helper_utils.search_index import SearchIndex  # re-exported: knn's counterpart with FAISS back ends and save/load

__all__ = [
    "find_closest",
    "get_embeddings",
    "get_query_img_embedding",
    "knn",
    "map_at_r",
    "precision_at_1",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
    "SearchIndex",
]

Device = Union[str, torch.device]
_CHUNK_ELEMENTS = 1 << 20  # distance-matrix entries held at once (8 MiB in float64)


# --------------------------------------------------------------------------- embeddings


@torch.no_grad()
def get_query_img_embedding(encoder: torch.nn.Module, transform: Any, img: Image.Image, device: Device) -> np.ndarray:
    """Embed one query photo: ``transform(img)`` through ``encoder`` in eval mode, without gradients.

    Args:
        encoder: maps ``(B, 3, H, W)`` to ``(B, D)``; already on ``device``.
        transform: turns a PIL RGB image into a ``(3, H, W)`` tensor (the validation transform).
        img: a PIL image of any mode (``"L"``, ``"RGBA"``, ... are converted to RGB first).
        device: where to run, e.g. ``"cpu"`` or ``torch.device("cuda")``.

    Returns:
        A float32 array ``(1, D)``.

    Raises:
        ValueError: when ``img`` is not a PIL image.
    """
    if not isinstance(img, Image.Image):
        raise ValueError(f"img should be a PIL image (e.g. PIL.Image.open(path)), got {type(img).__name__}")
    if img.mode != "RGB":
        img = img.convert("RGB")
    x = transform(img).unsqueeze(0).to(device)  # (1, 3, H, W)
    with _eval_mode(encoder):
        return encoder(x).float().cpu().numpy()  # (1, D)


@torch.no_grad()
def get_embeddings(encoder: torch.nn.Module, dataset: Any, device: Device, batch_size: int = 64,
                   progress: bool = False, num_workers: int = 0) -> np.ndarray:
    """Embed every image of ``dataset``, in the dataset's order, in eval mode and without gradients.

    Args:
        encoder: maps ``(B, 3, H, W)`` to ``(B, D)``; already on ``device``.
        dataset: map-style dataset whose items are ``(image_tensor, label)`` (or a bare tensor).
        device: where to run the encoder.
        batch_size: images per forward pass; the last batch may be smaller.
        progress: show a tqdm progress bar.
        num_workers: DataLoader workers decoding images in parallel.

    Returns:
        A float32 array ``(N, D)``; row ``i`` embeds ``dataset[i]``.

    Raises:
        ValueError: for an empty dataset or a ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size should be at least 1, got {batch_size!r}")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty: there is nothing to embed")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="embedding", unit="batch")
    chunks = []
    with _eval_mode(encoder):
        for batch in loader:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch  # drop the labels
            chunks.append(encoder(images.to(device)).float().cpu().numpy())  # (b, D)
    return np.concatenate(chunks)  # (N, D)


class _eval_mode:
    """Put a module in eval mode for a block and give it back its previous mode afterwards."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.was_training = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc) -> None:
        self.module.train(self.was_training)


# --------------------------------------------------------------------------- search


def find_closest(embeddings: Any, query_embedding: Any, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` catalog embeddings nearest to the query, nearest first.

    Args:
        embeddings: catalog ``(N, D)``.
        query_embedding: one query, ``(D,)`` or ``(1, D)``.
        k: how many to return; more than ``N`` returns all ``N``.

    Returns:
        An int64 array ``(min(k, N),)`` ordered by Euclidean distance; equal distances keep
        index order.

    Raises:
        ValueError: for ``k < 1``, or a query that is not a single ``D``-vector.
    """
    query = _as_2d(query_embedding, "query_embedding")
    if query.shape[0] != 1:
        raise ValueError(f"query_embedding should be one vector (D,) or (1, D), got shape {query.shape}")
    indices, _ = knn(embeddings, query, k)
    return indices[0]


def knn(embeddings: Any, queries: Any, k: int, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact batched k-nearest-neighbour search by Euclidean distance.

    Args:
        embeddings: catalog ``(N, D)``.
        queries: ``(Q, D)``; with ``exclude_self`` they are the catalog itself (``Q == N``).
        k: neighbours per query, clipped to the number available (``N``, or ``N - 1``).
        exclude_self: leave catalog item ``i`` out of query ``i``'s results (leave-one-out).
            Only the item itself is left out, by index: its duplicates stay.

    Returns:
        ``(indices, distances)``, both ``(Q, k)``, nearest first: int64 indices and float64
        distances. Equal distances keep index order.

    Raises:
        ValueError: for ``k < 1``, mismatched shapes, or too few catalog items.
    """
    catalog = _as_2d(embeddings, "embeddings")
    queries = _as_2d(queries, "queries")
    if queries.shape[1] != catalog.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions but the embeddings have {catalog.shape[1]}")
    if exclude_self and queries.shape[0] != catalog.shape[0]:
        raise ValueError(f"exclude_self needs the catalog as queries, got {queries.shape[0]} queries for "
                         f"{catalog.shape[0]} embeddings")
    k = _check_k(k, catalog.shape[0] - int(exclude_self))
    all_indices, all_distances = [], []
    for start, order, dist in _ranked(catalog, queries, exclude_self):
        keep = order[:, :k]  # (q, k)
        all_indices.append(keep)
        all_distances.append(np.sqrt(np.take_along_axis(dist, keep, axis=1)))
    return np.concatenate(all_indices), np.concatenate(all_distances)


def _ranked(catalog: np.ndarray, queries: np.ndarray,
            exclude_self: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(start, order, squared_distances)`` for chunks of queries, every catalog item ranked.

    With ``exclude_self`` the item itself is ranked last (its distance set to infinity), so the
    first ``N - 1`` columns of ``order`` are the other items.
    """
    sq_catalog = np.einsum("nd,nd->n", catalog, catalog)  # (N,)
    rows = max(1, _CHUNK_ELEMENTS // max(1, catalog.shape[0]))
    for start in range(0, queries.shape[0], rows):
        q = queries[start:start + rows]  # (q, D)
        # |q - e|^2 = |q|^2 + |e|^2 - 2 q.e, in float64; clipped because rounding can dip below 0
        dist = np.einsum("qd,qd->q", q, q)[:, None] + sq_catalog[None, :] - 2.0 * (q @ catalog.T)
        np.maximum(dist, 0.0, out=dist)  # (q, N)
        if exclude_self:
            dist[np.arange(len(q)), np.arange(start, start + len(q))] = np.inf
        yield start, np.argsort(dist, axis=1, kind="stable"), dist


def _as_2d(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} should be 2-D (N, D) or 1-D (D,), got shape {x.shape}")
    return x


def _check_k(k: Any, available: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k should be a positive integer, got {k!r}")
    if available < 1:
        raise ValueError("there are no catalog items to search")
    return min(int(k), available)


# --------------------------------------------------------------------------- metrics


def retrieval_metrics(embeddings: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Leave-one-out retrieval quality: every catalog item queries all the others.

    Metrics, averaged over the queries (each in [0, 1], higher is better):

    * ``"P@1"``: the nearest other item has the query's label.
    * ``"Recall@K"`` for each K in ``ks``: at least one of the K nearest has the query's label.
    * ``"R-Precision"``: with R the number of *other* items of the query's class, the share of
      the R nearest that have the query's label.
    * ``"mAP@R"``: ``(1/R) * sum_{i<=R} P(i) * rel(i)``, where ``rel(i)`` is 1 when the i-th
      nearest has the query's label and ``P(i)`` is the precision of the first i.

    A query whose class has no other item (R = 0) cannot score: it is left out of *every*
    metric, as pytorch-metric-learning does, so all metrics share one set of queries. The item
    still stays in the catalog as a distractor that other queries can retrieve.

    Args:
        embeddings: ``(N, D)``.
        labels: ``(N,)`` class of each item (any hashable values).
        ks: the K of each Recall@K.

    Returns:
        ``{"P@1", "Recall@K" for K in ks, "R-Precision", "mAP@R"}`` as floats.

    Raises:
        ValueError: for mismatched lengths, a K below 1, or no query with another item of its class.
    """
    catalog = _as_2d(embeddings, "embeddings")
    labels = np.asarray(labels)
    if labels.shape != (catalog.shape[0],):
        raise ValueError(f"labels should have shape ({catalog.shape[0]},), got {labels.shape}")
    if catalog.shape[0] < 2:
        raise ValueError(f"leave-one-out needs at least 2 items, got {catalog.shape[0]}")
    for k in ks:
        _check_k(k, catalog.shape[0])  # validation only: a K above N - 1 means "all the others"
    ks = [int(k) for k in ks]
    scores = []
    for start, order, _ in _ranked(catalog, catalog, exclude_self=True):
        others = order[:, :-1]  # (q, N-1): self is ranked last, drop it
        matches = labels[others] == labels[start:start + len(order), None]  # (q, N-1) bool
        scores.append(_per_query_scores(matches, ks))
    per_query = {name: np.concatenate([s[name] for s in scores]) for name in scores[0]}
    counted = per_query.pop("R") > 0
    if not counted.any():
        raise ValueError("no item has another item of its class, so no query can be scored")
    return {name: float(values[counted].mean()) for name, values in per_query.items()}


def _per_query_scores(matches: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-query metrics from a match matrix ``(Q, M)``: row = query, columns nearest first."""
    matches = matches.astype(np.float64)
    r = matches.sum(axis=1)  # (Q,) relevant items per query
    ranks = np.arange(1, matches.shape[1] + 1)  # (M,) 1-based
    within_r = ranks[None, :] <= r[:, None]  # (Q, M) the first R columns of each row
    hits_so_far = np.cumsum(matches, axis=1)  # (Q, M) relevant among the first i
    safe_r = np.maximum(r, 1.0)  # R = 0 rows are dropped later; avoid 0/0 meanwhile
    scores = {"P@1": matches[:, 0]}
    for k in ks:
        scores[f"Recall@{k}"] = matches[:, :k].max(axis=1)
    scores["R-Precision"] = (matches * within_r).sum(axis=1) / safe_r
    scores["mAP@R"] = (hits_so_far / ranks * matches * within_r).sum(axis=1) / safe_r
    scores["R"] = r
    return scores


def precision_at_1(embeddings: Any, labels: Any) -> float:
    """Share of queries whose nearest other item has their label (see :func:`retrieval_metrics`)."""
    return retrieval_metrics(embeddings, labels, ks=())["P@1"]


def recall_at_k(embeddings: Any, labels: Any, k: int = 5) -> float:
    """Share of queries with an item of their label among the ``k`` nearest others (see :func:`retrieval_metrics`)."""
    return retrieval_metrics(embeddings, labels, ks=(k,))[f"Recall@{k}"]


def r_precision(embeddings: Any, labels: Any) -> float:
    """Mean R-Precision under leave-one-out (see :func:`retrieval_metrics`)."""
    return retrieval_metrics(embeddings, labels, ks=())["R-Precision"]


def map_at_r(embeddings: Any, labels: Any) -> float:
    """Mean average precision at R under leave-one-out (see :func:`retrieval_metrics`)."""
    return retrieval_metrics(embeddings, labels, ks=())["mAP@R"]
