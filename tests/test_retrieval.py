"""Retrieval: embeddings, exact k-NN and leave-one-out metrics, against hand-computed cases and a loop oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset
from torchvision import transforms as T

from helper_utils import retrieval
from helper_utils.retrieval import (find_closest, get_embeddings, get_query_img_embedding, knn, map_at_r,
                                    precision_at_1, r_precision, recall_at_k, retrieval_metrics)

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


def test_find_closest_hand_computed():
    # distances from (0.9, 0): 0.9, 0.1, 2.1, sqrt(0.81 + 4) = 2.19
    assert find_closest(CATALOG, np.array([[0.9, 0.0]]), k=3).tolist() == [1, 0, 2]
    assert find_closest(CATALOG, np.array([0.9, 0.0]), k=4).tolist() == [1, 0, 2, 3]


def test_find_closest_returns_int_indices_and_clips_k():
    out = find_closest(CATALOG.astype(np.float32), torch.tensor([0.0, 1.9]), k=10)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    assert out.tolist() == [3, 0, 1, 2]
    assert find_closest(CATALOG, CATALOG[2]).shape == (4,)  # default k=5, clipped to N


def test_find_closest_keeps_index_order_on_ties():
    catalog = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]])
    assert find_closest(catalog, [0.0, 0.0], k=5).tolist() == [4, 0, 1, 2, 3]


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_find_closest_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k should be a positive integer"):
        find_closest(CATALOG, [0.0, 0.0], k=k)


def test_find_closest_rejects_several_queries():
    with pytest.raises(ValueError, match="one vector"):
        find_closest(CATALOG, CATALOG[:2])
    with pytest.raises(ValueError, match="dimensions"):
        find_closest(CATALOG, [0.0, 0.0, 0.0])


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
    monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 40)  # one or two queries per chunk
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


def test_single_metric_helpers_agree_with_the_dict():
    rng = np.random.default_rng(3)
    x, labels = rng.normal(size=(20, 3)), rng.integers(0, 3, size=20)
    m = retrieval_metrics(x, labels, ks=(1, 5))
    assert precision_at_1(x, labels) == m["P@1"] == m["Recall@1"]
    assert recall_at_k(x, labels, 5) == m["Recall@5"]
    assert r_precision(x, labels) == m["R-Precision"]
    assert map_at_r(x, labels) == m["mAP@R"]


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


# --------------------------------------------------------------------------- embeddings


def _encoder():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.5), nn.Linear(4, 5))
    enc[1].running_mean.fill_(0.5)
    return enc.train()


TRANSFORM = T.Compose([T.Resize((10, 10)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])


def _image(mode="RGB"):
    pixels = np.random.default_rng(0).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def test_query_embedding_is_the_eval_mode_output():
    enc, img = _encoder(), _image()
    out = get_query_img_embedding(enc, TRANSFORM, img, "cpu")
    enc.eval()
    with torch.no_grad():
        want = enc(TRANSFORM(img)[None]).numpy()
    assert isinstance(out, np.ndarray) and out.shape == (1, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_query_embedding_restores_the_mode_and_builds_no_graph():
    enc = _encoder()
    get_query_img_embedding(enc, TRANSFORM, _image(), torch.device("cpu"))
    assert enc.training
    assert all(p.grad is None for p in enc.parameters())


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_query_embedding_converts_any_mode_to_rgb(mode):
    enc = _encoder()
    out = get_query_img_embedding(enc, TRANSFORM, _image(mode), "cpu")
    want = get_query_img_embedding(enc, TRANSFORM, _image(mode).convert("RGB"), "cpu")
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("not_an_image", [np.zeros((8, 8, 3), np.uint8), "photo.jpg", torch.zeros(3, 8, 8)])
def test_query_embedding_rejects_non_images(not_an_image):
    with pytest.raises(ValueError, match="PIL image"):
        get_query_img_embedding(_encoder(), TRANSFORM, not_an_image, "cpu")


def _dataset(n=11):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % 3)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_get_embeddings_in_dataset_order(batch_size):
    enc, data = _encoder(), _dataset()
    out = get_embeddings(enc, data, "cpu", batch_size=batch_size)
    enc.eval()
    with torch.no_grad():
        want = torch.cat([enc(data[i][0][None]) for i in range(len(data))]).numpy()
    assert out.shape == (11, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_get_embeddings_restores_the_mode_and_shows_progress(capsys):
    enc = _encoder()
    out = get_embeddings(enc, _dataset(), torch.device("cpu"), batch_size=5, progress=True)
    assert out.shape == (11, 5) and enc.training
    assert "embedding" in capsys.readouterr().err


def test_get_embeddings_accepts_bare_image_datasets():
    images = _dataset().tensors[0]
    enc = _encoder()

    class Bare(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return images[i]

    np.testing.assert_allclose(get_embeddings(enc, Bare(), "cpu"), get_embeddings(enc, _dataset(), "cpu"))


def test_get_embeddings_validates_its_inputs():
    with pytest.raises(ValueError, match="empty"):
        get_embeddings(_encoder(), _dataset(0), "cpu")
    with pytest.raises(ValueError, match="batch_size"):
        get_embeddings(_encoder(), _dataset(), "cpu", batch_size=0)
