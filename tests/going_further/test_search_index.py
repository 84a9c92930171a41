"""SearchIndex: exact back ends match the knn oracle, approximate ones find the neighbours,
save/load round-trips, saving is atomic, and bad input gets a clear error."""

import json

import numpy as np
import pytest
import torch

from helper_utils.going_further import search_index as si
from helper_utils.retrieval import knn
from helper_utils.going_further.search_index import SearchIndex

FAISS_BACKENDS = ("flat", "hnsw", "ivf")


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _random(n=500, q=40, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(q, dim)).astype(np.float32)


def _clustered(n=3000, q=100, dim=16, clusters=30, seed=1):
    """Points around random unit centres, like embeddings of a few product types."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(clusters, dim)))
    catalog = centres[rng.integers(clusters, size=n)] + 0.15 * rng.normal(size=(n, dim))
    queries = centres[rng.integers(clusters, size=q)] + 0.15 * rng.normal(size=(q, dim))
    return catalog.astype(np.float32), queries.astype(np.float32)


def _recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.mark.parametrize("backend", ["exact", "flat"])
@pytest.mark.parametrize("normalize", [True, False])
def test_exact_backends_agree_with_knn(backend, normalize):
    catalog, queries = _random()
    index = SearchIndex(backend, normalize=normalize).add(torch.from_numpy(catalog))
    distances, indices = index.search(queries, k=7)
    if normalize:
        catalog, queries = _unit(catalog), _unit(queries)
    want_idx, want_dist = knn(catalog, queries, 7)
    assert distances.shape == indices.shape == (len(queries), 7)
    assert indices.dtype == np.int64 and distances.dtype == np.float32
    np.testing.assert_array_equal(indices, want_idx)
    np.testing.assert_allclose(distances, want_dist, rtol=1e-4, atol=1e-4)  # Euclidean, not squared


def test_single_query_and_k_equal_to_size():
    catalog, queries = _random(n=12)
    index = SearchIndex("exact").add(catalog)
    d_one, i_one = index.search(queries[3], k=12)
    _, i_batch = index.search(queries, k=12)
    assert i_one.shape == (1, 12) and sorted(i_one[0]) == list(range(12))
    np.testing.assert_array_equal(i_one[0], i_batch[3])
    assert np.all(np.diff(d_one[0]) >= 0)  # nearest first


@pytest.mark.parametrize("backend,params", [("hnsw", {"M": 16, "ef_construction": 64, "ef_search": 64}), ("ivf", {"nlist": 30, "nprobe": 4})])
def test_approximate_backends_have_high_recall_on_clustered_data(backend, params):
    catalog, queries = _clustered()
    _, truth = SearchIndex("exact").add(catalog).search(queries, k=10)
    _, found = SearchIndex(backend, **params).add(catalog).search(queries, k=10)
    assert _recall(found, truth) >= 0.95


def test_search_params_change_the_search():
    catalog, queries = _clustered()
    _, truth = SearchIndex("exact").add(catalog).search(queries, k=10)
    index = SearchIndex("ivf", nlist=60, nprobe=1).add(catalog)
    narrow = _recall(index.search(queries, k=10)[1], truth)
    index.set_search_params(nprobe=60)  # every cell: exhaustive
    assert index.params["nprobe"] == 60
    assert narrow < 0.99 and _recall(index.search(queries, k=10)[1], truth) == 1.0


def test_ivf_default_nlist_and_second_add():
    catalog, _ = _clustered(n=400)
    index = SearchIndex("ivf").add(catalog[:300]).add(catalog[300:])
    assert index.params["nlist"] == round(4 * 300 ** 0.5) and len(index) == 400
    _, indices = index.set_search_params(nprobe=index.params["nlist"]).search(catalog[350], k=1)
    assert indices[0, 0] == 350  # rows of the second add are searchable and numbered after the first


def test_labels_and_ids_follow_rows():
    catalog, _ = _random(n=6)
    index = SearchIndex("flat").add(catalog[:4], labels=np.array([0, 1, 2, 3])).add(catalog[4:], labels=["a", "b"])
    assert index.labels == [0, 1, 2, 3, "a", "b"] and type(index.labels[0]) is int
    assert index.ids == ["0", "1", "2", "3", "4", "5"]
    _, rows = index.search(catalog[5], k=1)
    assert index.labels[rows[0, 0]] == "b" and index.dim == 16


@pytest.mark.parametrize("backend", SearchIndex.BACKENDS)
def test_save_load_round_trip(backend, tmp_path):
    catalog, queries = _clustered(n=600, q=20)
    params = {"ivf": {"nlist": 20, "nprobe": 3}, "hnsw": {"M": 8, "ef_search": 20}}.get(backend, {})
    index = SearchIndex(backend, **params).add(catalog, labels=[i % 7 for i in range(600)],
                                               ids=[f"img_{i}.jpg" for i in range(600)])
    saved = index.save(tmp_path / "catalog_index")
    loaded = SearchIndex.load(saved)
    assert (loaded.backend, loaded.params, loaded.labels, loaded.ids, loaded.dim, len(loaded)) == \
        (backend, index.params, index.labels, index.ids, 16, 600)
    for a, b in zip(index.search(queries, k=10), loaded.search(queries, k=10)):
        np.testing.assert_array_equal(a, b)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_save_replaces_an_older_index(tmp_path):
    catalog, _ = _random(n=50)
    SearchIndex("exact").add(catalog[:10]).save(tmp_path / "idx")
    SearchIndex("flat").add(catalog).save(tmp_path / "idx")
    loaded = SearchIndex.load(tmp_path / "idx")
    assert loaded.backend == "flat" and len(loaded) == 50
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.faiss", "meta.json"]


@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_failed_save_leaves_no_partial_directory_and_keeps_the_old_index(backend, tmp_path, monkeypatch):
    catalog, queries = _random(n=80)
    target = tmp_path / "idx"
    old = SearchIndex("exact").add(catalog[:40])
    old.save(target)
    before = old.search(queries, k=3)

    def fail_on_meta(self, path):  # the data file is written, then the metadata fails (disk full, ...)
        raise OSError("simulated: no space left on device")

    monkeypatch.setattr(si.Path, "write_text", fail_on_meta)
    with pytest.raises(OSError, match="simulated"):
        SearchIndex(backend).add(catalog).save(target)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary directory left over
    survivor = SearchIndex.load(target)
    assert len(survivor) == 40
    for a, b in zip(before, survivor.search(queries, k=3)):
        np.testing.assert_array_equal(a, b)


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(si, "sha256_file", lambda path: (_ for _ in ()).throw(OSError("simulated crash")))
    with pytest.raises(OSError, match="simulated"):
        SearchIndex("flat").add(_random(n=5)[0]).save(tmp_path / "idx")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_to_overwrite_something_else(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a saved SearchIndex"):
        SearchIndex("exact").add(_random(n=5)[0]).save(tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved SearchIndex"):
        SearchIndex.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no meta.json"):
        SearchIndex.load(tmp_path / "empty")
    path = SearchIndex("flat").add(_random(n=30)[0]).save(tmp_path / "idx")
    data = path / "index.faiss"
    data.write_bytes(data.read_bytes()[:-100])  # truncated
    with pytest.raises(ValueError, match="corrupt"):
        SearchIndex.load(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        SearchIndex.load(path)
    (path / "meta.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(ValueError, match="not an index saved by SearchIndex.save"):
        SearchIndex.load(path)


@pytest.mark.parametrize("make,message", [
    (lambda: SearchIndex("annoy"), "unknown backend 'annoy': choose one of exact, flat, hnsw, ivf"),
    (lambda: SearchIndex("hnsw", nprobe=4), "backend 'hnsw' has no parameter 'nprobe'; it accepts: M, ef_construction, ef_search"),
    (lambda: SearchIndex("exact", M=8), "it accepts: none"),
    (lambda: SearchIndex("hnsw", M=0), "M should be a positive integer, got 0"),
    (lambda: SearchIndex("ivf").set_search_params(ef_search=10), "no search parameter 'ef_search'; it accepts: nprobe"),
    (lambda: SearchIndex("ivf", nlist=50).add(np.ones((10, 4))), "needs at least 50 vectors"),
])
def test_bad_configuration(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize("backend", ["exact", "flat"])
def test_bad_inputs(backend):
    catalog, _ = _random(n=20, dim=8)
    empty = SearchIndex(backend)
    with pytest.raises(ValueError, match="the index is empty"):
        empty.search(catalog[0])
    index = SearchIndex(backend).add(catalog, ids=[f"p{i}" for i in range(20)])
    cases = [
        (lambda: index.search(np.ones(5)), "queries have 5 dimensions but the index holds 8-d vectors"),
        (lambda: index.add(np.ones((2, 5))), "embeddings have 5 dimensions"),
        (lambda: index.search(catalog[0], k=21), "k should be an integer from 1 to the index size 20, got 21"),
        (lambda: index.search(catalog[0], k=0), "got 0"),
        (lambda: index.search(np.full(8, np.nan)), "NaN or infinite"),
        (lambda: index.add(np.zeros((1, 8))), "all-zero vector"),
        (lambda: index.add(np.ones((0, 8))), "non-empty"),
        (lambda: index.add(np.ones((2, 8)), labels=[1]), "labels has 1 entries for 2 embeddings"),
        (lambda: index.add(np.ones((1, 8)), ids=["p3"]), "ids must be unique.*p3"),
        (lambda: index.add(np.ones((1, 8)), labels=[1.5]), "labels should be str or int"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert len(index) == 20  # failed adds changed nothing


def test_failed_first_add_leaves_the_index_empty():
    index = SearchIndex("ivf", nlist=50)
    with pytest.raises(ValueError, match="needs at least 50 vectors"):
        index.add(np.ones((10, 4)))
    assert len(index) == 0 and index.dim is None  # a later add may use another dimension
    index.add(np.random.default_rng(0).normal(size=(60, 8)))
    assert index.dim == 8 and len(index) == 60


def test_exact_index_and_knn_order_ties_alike():
    """Equal distances come back in index order from both, so the service and notebook 06 agree."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(5, 8)).astype(np.float32)
    catalog = np.repeat(base, 4, axis=0)[rng.permutation(20)]  # every vector four times, shuffled
    queries = base + 0.01 * rng.normal(size=base.shape).astype(np.float32)
    unit = _unit(catalog)
    want_idx, _ = knn(unit, _unit(queries), 10)
    _, got_idx = SearchIndex("exact").add(catalog).search(queries, k=10)
    np.testing.assert_array_equal(got_idx, want_idx)
    for row in want_idx:  # ties (the four copies) in ascending index order
        for a, b in zip(row[:-1], row[1:]):
            if np.array_equal(unit[a], unit[b]):
                assert a < b
