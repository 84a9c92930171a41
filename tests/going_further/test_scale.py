"""helper_utils.going_further.scale on tiny catalogs: the generator's shape, the benchmark's bookkeeping."""

import faiss
import numpy as np
import pytest

from helper_utils.going_further import scale
from helper_utils.going_further.scale import CatalogShape, IndexConfig

TINY = [IndexConfig("exact"), IndexConfig("flat"),
        IndexConfig("hnsw", {"M": 8, "ef_construction": 40}, [{"ef_search": 8}, {"ef_search": 64}]),
        IndexConfig("ivf", {"nlist": 16}, [{"nprobe": 1}, {"nprobe": 16}])]


def test_synthetic_catalog_is_seeded_unit_float32():
    a = scale.synthetic_catalog(3000, dim=32, seed=3, chunk=700)  # several chunks
    assert a.shape == (3000, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, scale.synthetic_catalog(3000, dim=32, seed=3))  # chunking does not matter
    assert not np.array_equal(a, scale.synthetic_catalog(3000, dim=32, seed=4))


def test_synthetic_catalog_is_clustered_like_the_real_one_not_uniform():
    data = scale.synthetic_catalog(3000)
    synthetic = scale.catalog_statistics(data[:2700], data[2700:])
    noise = np.random.default_rng(0).normal(size=(3000, 64))
    uniform = scale.catalog_statistics(noise[:2700], noise[2700:])
    # uniform noise on the sphere: the nearest neighbour is nearly as far as a random item (1.08 vs 1.41)
    assert uniform["nn1_median"] > 0.7 * uniform["pair_median"] and uniform["effective_dims"] > 50
    # the fitted mixture, near the real embeddings' values (0.385, 0.878, 0.78, 10): see the module docstring
    assert synthetic["nn1_median"] < 0.5 * synthetic["pair_median"]
    assert 0.3 < synthetic["nn1_median"] < 0.45 and 0.7 < synthetic["mean_length"] < 0.85
    assert synthetic["effective_dims"] < 20


def test_the_catalog_shape_sets_how_tight_the_clusters_are():
    def nn1(spread):
        data = scale.synthetic_catalog(3000, shape=CatalogShape(spread=spread))
        return scale.catalog_statistics(data[:2700], data[2700:])["nn1_median"]

    assert nn1(0.3) < nn1(CatalogShape().spread) < nn1(1.2)


def test_catalog_statistics_on_known_geometry():
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(4000, 8))
    stats = scale.catalog_statistics(isotropic, isotropic[:50], k=3)
    assert stats["n"] == 4000 and stats["nn1_median"] == pytest.approx(0.0, abs=1e-3)  # queries are catalog items
    assert stats["effective_dims"] == pytest.approx(8, rel=0.1) and stats["mean_length"] < 0.1
    assert set(stats) == {"n", "nn1_median", "nn3_median", "pair_median", "mean_length", "effective_dims"}


def test_recall_counts_shared_neighbours_and_ignores_padding():
    truth = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    found = np.array([[3, 2, 1, 0], [4, 9, -1, -1]])
    assert scale._recall(found, truth) == pytest.approx((4 + 1) / 8)


def test_benchmark_rows():
    data = scale.synthetic_catalog(2100, dim=16, seed=1)
    rows = scale.benchmark_configs(data[:2000], data[2000:], TINY, k=5, n_single=10, log=lambda line: None)
    assert [r["method"] for r in rows] == ["exact", "flat", "hnsw M=8 ef_search=8", "hnsw M=8 ef_search=64",
                                           "ivf nlist=16 nprobe=1", "ivf nlist=16 nprobe=16"]
    by_name = {r["method"]: r for r in rows}
    assert by_name["exact"]["recall_at_k"] == 1.0 and max(by_name["exact"]["speedup_single"],
                                                          by_name["flat"]["speedup_single"]) == 1.0
    assert by_name["flat"]["recall_at_k"] == 1.0
    assert by_name["ivf nlist=16 nprobe=16"]["recall_at_k"] == 1.0  # every cell scanned: exhaustive
    assert by_name["ivf nlist=16 nprobe=1"]["recall_at_k"] < 1.0
    assert by_name["hnsw M=8 ef_search=64"]["recall_at_k"] >= by_name["hnsw M=8 ef_search=8"]["recall_at_k"]
    for r in rows:
        assert r["single_p95_ms"] >= r["single_median_ms"] > 0 and r["batch_ms_per_query"] > 0
        assert r["index_bytes"] >= 2000 * 16 * 4  # at least the raw vectors
        fastest_exact = min(by_name["exact"]["single_median_ms"], by_name["flat"]["single_median_ms"])
        assert r["speedup_single"] == pytest.approx(fastest_exact / r["single_median_ms"])
    assert by_name["hnsw M=8 ef_search=8"]["index_bytes"] > by_name["flat"]["index_bytes"]  # the graph costs memory


def test_benchmark_needs_exact_first():
    with pytest.raises(ValueError, match="first config must be exact"):
        scale.benchmark_configs(np.ones((5, 4)), np.ones((2, 4)), [IndexConfig("flat")])


def test_default_configs_scale_with_n():
    big, small = scale.default_configs(1_000_000), scale.default_configs(2000)
    assert [c.backend for c in big] == ["exact", "flat", "hnsw", "hnsw", "ivf"]
    assert big[-1].build["nlist"] == 1024 and small[-1].build["nlist"] == round(4 * 2000 ** 0.5)
    assert all(s["nprobe"] <= 179 for s in small[-1].searches)
    resized = scale._resized(big, 2758)
    assert resized[-1].build["nlist"] == 210 and max(s["nprobe"] for s in resized[-1].searches) == 128


def _row(method, backend, ms, recall):
    return {"method": method, "backend": backend, "single_median_ms": ms, "recall_at_k": recall,
            "speedup_single": 20.0 / ms}


def test_summarize_answers_the_targets():
    rows = [_row("exact", "exact", 20.0, 1.0), _row("h fast", "hnsw", 0.1, 0.90), _row("h ok", "hnsw", 0.15, 0.96),
            _row("h high", "hnsw", 0.4, 0.995), _row("ivf high", "ivf", 0.3, 0.992)]
    summary = scale.summarize(rows)
    assert summary["best_hnsw"]["method"] == "h ok" and summary["target_met"]  # 133x at 0.96
    assert summary["fastest_high_recall"]["method"] == "ivf high"
    assert summary["exact_method"] == "exact" and summary["exact_single_ms"] == 20.0
    slow = scale.summarize([rows[0], _row("h slow", "hnsw", 0.5, 0.97)])
    assert slow["best_hnsw"]["method"] == "h slow" and not slow["target_met"]  # only 40x
    none = scale.summarize(rows[:2])
    assert none["best_hnsw"] is None and not none["target_met"] and none["fastest_high_recall"] is None


def test_threads_are_restored():
    before = faiss.omp_get_max_threads()
    with scale._threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
