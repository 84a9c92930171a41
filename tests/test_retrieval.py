"""Retrieval: embeddings, exact k-NN and leave-one-out metrics, against hand-computed cases and a loop oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helper_utils import retrieval
from helper_utils.retrieval import knn, l2_normalize, retrieval_metrics

# --------------------------------------------------------------------------- oracles (plain loops)


def _loop_knn(catalog, queries, k, exclude_self=False):
    indices, distances = [], []
    for qi, q in enumerate(queries):
        ranked = sorted((math.dist(q, e), j) for j, e in enumerate(catalog) if not (exclude_self and j == qi))
        indices.append([j for _, j in ranked[:k]])
        distances.append([d for d, _ in ranked[:k]])
    return np.array(indices), np.array(distances)


def _loop_metrics(embeddings, labels, ks):
    """Leave-one-out metrics, one query at a time, straight from the definitions."""
    per_query = {"P@1": [], **{f"Recall@{k}": [] for k in ks}, "R-Precision": [], "mAP@R": []}
    for i in range(len(embeddings)):
        ranked = sorted((math.dist(embeddings[i], embeddings[j]), j) for j in range(len(embeddings)) if j != i)
        rel = [labels[j] == labels[i] for _, j in ranked]
        r = sum(rel)
        if r == 0:
            continue  # no other item of this class: the query cannot score
        per_query["P@1"].append(float(rel[0]))
        for k in ks:
            per_query[f"Recall@{k}"].append(float(any(rel[:k])))
        per_query["R-Precision"].append(sum(rel[:r]) / r)
        per_query["mAP@R"].append(sum(sum(rel[:m + 1]) / (m + 1) for m in range(r) if rel[m]) / r)
    return {name: sum(v) / len(v) for name, v in per_query.items()}


# --------------------------------------------------------------------------- find_closest / knn


CATALOG = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])


@pytest.mark.parametrize("exclude_self", [False, True])
def test_knn_matches_the_loop_oracle(exclude_self):
    rng = np.random.default_rng(0)
    catalog = rng.normal(size=(30, 5)) * rng.uniform(0.1, 3.0, size=(30, 1))
    queries = catalog if exclude_self else rng.normal(size=(7, 5))
    indices, distances = knn(catalog, queries, k=6, exclude_self=exclude_self)
    want_i, want_d = _loop_knn(catalog, queries, 6, exclude_self)
    assert indices.shape == distances.shape == want_i.shape
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_allclose(distances, want_d, atol=1e-9)


def test_knn_exclude_self_leaves_out_only_the_item_itself():
    catalog = np.array([[0.0], [0.0], [5.0]])  # items 0 and 1 are duplicates
    indices, distances = knn(catalog, catalog, k=5, exclude_self=True)
    assert indices.tolist() == [[1, 2], [0, 2], [0, 1]]  # k clipped to N - 1
    assert distances[0].tolist() == [0.0, 5.0]


def test_knn_in_chunks_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(1)
    catalog = rng.normal(size=(25, 3))
    whole = knn(catalog, catalog, k=4, exclude_self=True)
    monkeypatch.setattr(retrieval, "_KNN_CHUNK_ELEMENTS", 40)  # one or two queries per chunk
    chunked = knn(catalog, catalog, k=4, exclude_self=True)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_allclose(whole[1], chunked[1])


def test_knn_validates_its_inputs():
    with pytest.raises(ValueError, match="exclude_self"):
        knn(CATALOG, CATALOG[:2], k=1, exclude_self=True)
    with pytest.raises(ValueError, match="2-D"):
        knn(np.zeros((2, 2, 2)), CATALOG, k=1)
    with pytest.raises(ValueError, match="no catalog items"):
        knn(CATALOG[:1], CATALOG[:1], k=1, exclude_self=True)


# --------------------------------------------------------------------------- metrics


def test_metrics_hand_computed_four_points():
    # (0,0) a, (1,0) a, (3,0) b, (0,2) b: both a's find each other first; both b's find an a first.
    m = retrieval_metrics(CATALOG, ["a", "a", "b", "b"], ks=(1, 2, 3))
    assert m == pytest.approx({"P@1": 0.5, "Recall@1": 0.5, "Recall@2": 0.5, "Recall@3": 1.0,
                               "R-Precision": 0.5, "mAP@R": 0.5})


def test_metrics_hand_computed_six_points():
    # 1-D points 0, 1, 3, 4, 10, 12 with labels a a b a b b (R = 2 for every query). Matches nearest first:
    #   q0 1 0 1 0 0 | q1 1 0 1 0 0 | q2 0 0 0 1 1 | q3 0 1 1 0 0 | q4 1 0 1 0 0 | q5 1 0 1 0 0
    # P@1 = 4/6; R-Precision = (4 * 1/2 + 0 + 1/2) / 6; AP@R: q3 = (0 + 1/2) / 2 = 1/4, q2 = 0, others 1/2.
    x = np.array([[0.0], [1.0], [3.0], [4.0], [10.0], [12.0]])
    m = retrieval_metrics(x, [0, 0, 1, 0, 1, 1], ks=(2, 3, 4))
    assert m["P@1"] == pytest.approx(4 / 6)
    assert m["Recall@2"] == pytest.approx(5 / 6)
    assert m["Recall@3"] == pytest.approx(5 / 6)
    assert m["Recall@4"] == pytest.approx(1.0)
    assert m["R-Precision"] == pytest.approx(2.5 / 6)
    assert m["mAP@R"] == pytest.approx(2.25 / 6)


def test_per_query_scores_from_match_rows():
    matches = np.array([
        [0, 1, 1, 0, 1],  # R = 3: R-Precision 2/3, AP@R (0 + 1/2 + 2/3) / 3 = 7/18
        [1, 0, 0, 0, 1],  # R = 2: R-Precision 1/2, AP@R (1 + 0) / 2 = 1/2
        [1, 1, 0, 0, 0],  # R = 2: perfect
    ], dtype=bool)
    s = retrieval._per_query_scores(matches, ks=(1, 3))
    np.testing.assert_allclose(s["R-Precision"], [2 / 3, 1 / 2, 1.0])
    np.testing.assert_allclose(s["mAP@R"], [7 / 18, 1 / 2, 1.0])
    np.testing.assert_allclose(s["Recall@3"], [1, 1, 1])
    np.testing.assert_allclose(s["P@1"], [0, 1, 1])
    np.testing.assert_allclose(s["R"], [3, 2, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_the_loop_oracle(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=40).tolist() + [9]  # plus one item alone in its class
    centres = rng.normal(size=(10, 6)) * 2
    x = centres[labels] + rng.normal(size=(41, 6))
    want = _loop_metrics(x, labels, ks=(1, 3, 10))
    got = retrieval_metrics(x, labels, ks=(1, 3, 10))
    assert got == pytest.approx(want)
    monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 100)  # several chunks of queries
    assert retrieval_metrics(x, labels, ks=(1, 3, 10)) == pytest.approx(want)


def test_single_item_classes_are_left_out_of_every_metric():
    # The lone "c" item cannot score; as a distractor it still costs the a's their P@1 here.
    x = np.array([[0.0], [2.0], [1.0], [10.0], [11.0]])
    m = retrieval_metrics(x, ["a", "a", "c", "b", "b"], ks=(1,))
    assert m["P@1"] == pytest.approx(0.5)  # 2 of the 4 queries that count (the b's); c is no query
    assert m["R-Precision"] == pytest.approx(0.5)
    assert m["Recall@1"] == m["P@1"]


def test_recall_k_above_the_catalog_means_all_others():
    m = retrieval_metrics(CATALOG, [0, 0, 1, 1], ks=(50,))
    assert m["Recall@50"] == 1.0


def test_metrics_validate_their_inputs():
    with pytest.raises(ValueError, match="labels should have shape"):
        retrieval_metrics(CATALOG, [0, 1])
    with pytest.raises(ValueError, match="at least 2 items"):
        retrieval_metrics(CATALOG[:1], [0])
    with pytest.raises(ValueError, match="no query"):
        retrieval_metrics(CATALOG, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="k should be"):
        retrieval_metrics(CATALOG, [0, 0, 1, 1], ks=(0,))


def test_l2_normalize_numpy_and_torch_alike():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], atol=1e-7)
    t = torch.tensor(x, requires_grad=True)
    out = l2_normalize(t)
    np.testing.assert_allclose(out.detach().numpy(), l2_normalize(x), atol=1e-7)
    out.sum().backward()  # keeps the gradient
    assert torch.isfinite(t.grad).all()


def test_notebook_05_recall_at_k_agrees_with_retrieval_metrics():
    """Notebook 05 prints both on the validation catalog (no class with a single photo) and says they agree."""
    from helper_utils.reference import recall_at_k

    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(7), [30, 41, 25, 60, 44, 39, 37])  # 276 items, seven classes
    embeddings = rng.normal(size=(len(labels), 16)).astype(np.float32) + labels[:, None] * 0.15
    metrics = retrieval_metrics(embeddings, labels, ks=(1, 5))
    x, y = torch.from_numpy(embeddings), torch.from_numpy(labels)
    # float32 means: equal up to rounding, far below one query's 1/276
    assert recall_at_k(x, y, 1) == pytest.approx(metrics["P@1"], abs=1e-6)
    assert recall_at_k(x, y, 5) == pytest.approx(metrics["Recall@5"], abs=1e-6)


def test_knn_many_ties_at_the_boundary_keep_index_order():
    """More equal distances than the fast pass keeps beyond k: the lowest indices still win."""
    rng = np.random.default_rng(2)
    catalog = np.concatenate([rng.normal(size=(30, 4)) + 10, np.ones((40, 4)), rng.normal(size=(30, 4)) + 10])
    catalog = catalog[rng.permutation(len(catalog))]
    copies = np.flatnonzero((catalog == 1).all(axis=1))  # ascending
    indices, distances = knn(catalog, np.ones((1, 4)), k=25)
    assert indices[0].tolist() == copies[:25].tolist()
    assert distances[0].tolist() == [0.0] * 25


def test_knn_float32_pass_does_not_lose_near_ties():
    """Two items closer than float32 can tell apart come back in exact float64 order."""
    catalog = np.array([[1.0, 1e-9], [1.0, 0.0], [1.0, 2e-9], [5.0, 5.0]])
    indices, _ = knn(catalog, np.array([[1.0, 0.0]]), k=3)
    assert indices[0].tolist() == [1, 0, 2]
