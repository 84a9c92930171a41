"""Exact k-nearest-neighbour search and retrieval metrics.

Two layers, kept apart (the embedding functions are notebook 06's answers, in
:mod:`helper_utils.reference`):

* search: :func:`l2_normalize` and :func:`knn`, the kit's one exact k-nearest-neighbour search
  (batched, Euclidean); ``SearchIndex`` in the going-further package uses it as its exact back end;
* metrics under leave-one-out on a catalog, where every item queries all the others:
  :func:`retrieval_metrics`.

The metric maths works on a boolean *match matrix*: row ``i`` lists, nearest first, whether
each other catalog item has query ``i``'s label. R-Precision and mAP@R follow Musgrave,
Belongie and Lim, "A Metric Learning Reality Check" (ECCV 2020).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

__all__ = ["knn", "l2_normalize", "retrieval_metrics", "retrieval_scores"]

_CHUNK_ELEMENTS = 1 << 20  # metrics: distance-matrix entries ranked at once (8 MiB in float64)
_KNN_CHUNK_ELEMENTS = 1 << 24  # knn: float32 distances held at once (64 MiB): 16 queries of a 1M catalog


# --------------------------------------------------------------------------- search


def l2_normalize(embeddings: Any) -> Any:
    """Scale every row to length 1, so Euclidean distance ranks like cosine similarity.

    Takes and returns a NumPy array or a torch tensor ``(N, D)`` (or one vector ``(D,)``);
    a tensor keeps its gradient. An all-zero row stays zero.
    """
    if isinstance(embeddings, torch.Tensor):
        return torch.nn.functional.normalize(embeddings, dim=-1)
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)  # (N, 1)
    return x / np.maximum(norms, 1e-12)


def knn(embeddings: Any, queries: Any, k: int, exclude_self: bool = False, *,
        squared_norms: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact batched k-nearest-neighbour search by Euclidean distance.

    Two passes per chunk of queries: a fast float32 pass (one ``torch.addmm`` over the whole
    catalog, then ``topk``) keeps every item that could be among the ``k`` nearest, with a
    margin larger than float32 rounding can cause; a float64 pass measures those few candidates
    exactly and orders them. The result is the exact float64 answer, at float32 speed (a
    million 64-d items take milliseconds per query, not a full sort).

    Args:
        embeddings: catalog ``(N, D)``.
        queries: ``(Q, D)``; with ``exclude_self`` they are the catalog itself (``Q == N``).
        k: neighbours per query, clipped to the number available (``N``, or ``N - 1``).
        exclude_self: leave catalog item ``i`` out of query ``i``'s results (leave-one-out).
            Only the item itself is left out, by index: its duplicates stay.
        squared_norms: the catalog's squared row lengths ``(N,)`` as a float32 tensor, when the
            caller keeps them between searches (``SearchIndex`` does); ``None`` computes them.

    Returns:
        ``(indices, distances)``, both ``(Q, k)``, nearest first: int64 indices and float64
        distances. Equal distances keep index order.

    Raises:
        ValueError: for ``k < 1``, mismatched shapes, or too few catalog items.
    """
    catalog, catalog_exact = _as_2d_pair(embeddings, "embeddings")
    queries, queries_exact = _as_2d_pair(queries, "queries")
    if queries.shape[1] != catalog.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions but the embeddings have {catalog.shape[1]}")
    if exclude_self and queries.shape[0] != catalog.shape[0]:
        raise ValueError(f"exclude_self needs the catalog as queries, got {queries.shape[0]} queries for "
                         f"{catalog.shape[0]} embeddings")
    k = _check_k(k, catalog.shape[0] - int(exclude_self))
    items = torch.from_numpy(catalog)  # (N, D) float32, shares memory when the catalog is float32 already
    if squared_norms is None:
        sq_items = (items * items).sum(dim=1)  # (N,); NaN or inf when any value is
        if not torch.isfinite(sq_items).all():
            raise ValueError("the embeddings contain NaN or infinite values (or values too large for float32)")
    else:
        sq_items = squared_norms  # computed (and checked) by the caller, once for many searches
    if not np.isfinite(queries).all():
        raise ValueError("the queries contain NaN or infinite values (or values too large for float32)")
    max_norm = float(sq_items.max().sqrt())
    rows = max(1, _KNN_CHUNK_ELEMENTS // catalog.shape[0])
    all_indices, all_distances = [], []
    for start in range(0, queries.shape[0], rows):
        q = torch.from_numpy(queries[start:start + rows])  # (q, D)
        # |q - e|^2 - |q|^2 = |e|^2 - 2 q.e: one matrix product does the O(N * D) work per query
        dist = torch.addmm(sq_items[None, :], q, items.T, alpha=-2.0)  # (q, N) float32
        if exclude_self:
            dist[torch.arange(len(q)), torch.arange(start, start + len(q))] = float("inf")
        # float32 rounding of |e|^2 - 2 q.e stays below (D + 8) ulps of (|q| + max|e|)^2: candidates within
        # that margin of the k-th distance may be nearer in exact arithmetic, so all of them are measured
        margin = (catalog.shape[1] + 8) * 2.4e-7 * (q.norm(dim=1) + max_norm) ** 2  # (q,)
        candidates = _candidates(dist, k, margin)  # (M, 2): (row, item), row-major
        rows_c, cols_c = candidates[:, 0].numpy(), candidates[:, 1].numpy()
        indices, distances = _exact_top_k(catalog_exact, queries_exact[start:start + len(q)], rows_c, cols_c, k)
        all_indices.append(indices)
        all_distances.append(distances)
    return np.concatenate(all_indices), np.concatenate(all_distances)


def _candidates(dist: torch.Tensor, k: int, margin: torch.Tensor) -> torch.Tensor:
    """(row, item) pairs whose float32 distance is within ``margin`` of the row's k-th smallest.

    Usually those are exactly the row's ``topk``; a row with more (near-ties at the boundary)
    takes every item under its threshold from one comparison with the whole row.
    """
    values, items = dist.topk(k, dim=1, largest=False, sorted=False)  # (q, k)
    threshold = values.max(dim=1).values + margin  # (q,)
    within = dist <= threshold[:, None]  # (q, N)
    crowded = (within.sum(dim=1) > k).nonzero()[:, 0]  # rows with more candidates than their topk
    rows = torch.arange(len(dist))[:, None].expand(-1, k)
    pairs = torch.stack([rows.reshape(-1), items.reshape(-1)], dim=1)  # (q * k, 2)
    if len(crowded):
        pairs = pairs[~torch.isin(pairs[:, 0], crowded)]
        full = torch.nonzero(within[crowded])  # (M', 2) within the crowded rows
        pairs = torch.cat([pairs, torch.stack([crowded[full[:, 0]], full[:, 1]], dim=1)])
    return pairs


def _exact_top_k(catalog: np.ndarray, queries: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of each query's candidates, measured in float64: nearest first, ties by index.

    ``rows``/``cols`` list the candidate pairs (query row, catalog item), at least ``k`` per row.
    """
    diff = catalog[cols].astype(np.float64) - queries[rows].astype(np.float64)  # (M, D)
    distances = np.sqrt(np.einsum("md,md->m", diff, diff))  # (M,)
    order = np.lexsort((cols, distances, rows))  # by query, then distance, then catalog index
    counts = np.bincount(rows, minlength=len(queries))  # (q,) candidates per query, each >= k
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (q,) where each query's candidates start
    picked = order[first[:, None] + np.arange(k)[None, :]]  # (q, k)
    return cols[picked].astype(np.int64), distances[picked]


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


def _as_2d_pair(x: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as float32 ``(N, D)`` for the fast pass, and as given (float32 or float64) for the exact one."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    exact = np.asarray(x)
    if exact.dtype not in (np.float32, np.float64):
        exact = exact.astype(np.float64)
    if exact.ndim == 1:
        exact = exact[None, :]
    if exact.ndim != 2:
        raise ValueError(f"{name} should be 2-D (N, D) or 1-D (D,), got shape {exact.shape}")
    return np.ascontiguousarray(exact, dtype=np.float32), exact


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
    return {name: float(values.mean()) for name, values in retrieval_scores(embeddings, labels, ks).items()}


def retrieval_scores(embeddings: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[str, np.ndarray]:
    """:func:`retrieval_metrics` per query: ``{metric: (Q,) array}`` over the queries that count.

    The queries come in catalog order, those whose class has no other item left out; a
    bootstrap over queries (``make bench``) resamples these arrays.
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
    return {name: values[counted] for name, values in per_query.items()}


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
