"""Search at scale: a synthetic million-item catalog shaped like the course's embeddings, and a
benchmark of exact against approximate (FAISS HNSW, IVF) nearest-neighbour search on it.

The synthetic catalog
---------------------
The real catalog has a few thousand photos, far too few to show why approximate search exists,
and a million real fashion photos are not at hand. :func:`synthetic_catalog` draws a stand-in
from a **Gaussian mixture on the unit sphere**, because what makes an index fast or slow is the
*geometry* of the data, and real embeddings are nothing like uniform noise: they come in clusters
(product types, near-duplicate photos) and fill only a few of their 64 directions. Uniform noise
in 64 dimensions has almost no neighbourhood structure (a point's nearest neighbour is nearly as
far as a random point), which makes every index look bad. How much recall depends on this "local
intrinsic dimensionality" is shown by Aumüller and Ceccarello, "The role of local intrinsic
dimensionality in benchmarking nearest neighbor search" (SISAP 2019).

How a catalog of ``n`` vectors is drawn (all seeded, float32, see :class:`CatalogShape`):

1. one shared direction ``m`` with non-negative entries (a cone, as pooled ReLU features form) and
   a random orthonormal basis;
2. ``n / points_per_cluster`` cluster centres ``mean_weight * m + centre_weight * (s_c * z) @ basis``
   with ``z`` standard normal and ``s_c`` a power-law spectrum (``centre_decay``): the centres
   spread over some directions more than others;
3. cluster sizes from a log-normal (``size_skew``): a few big product types, many small ones;
4. each point = its centre + ``spread * (s_w * a_j * z) @ basis``, where ``s_w`` is a flatter
   power law (``spread_decay``) and ``a_j`` are log-normal per-cluster axis scales
   (``anisotropy``): every cluster is stretched differently;
5. every point is L2-normalised, as the course normalises embeddings.

The cluster count grows with ``n``, as a bigger shop has more kinds of products, so the density
around a query, and with it the difficulty of the search, stays like the real catalog's. What
does not stay the same: the many more centres fill more directions than the real catalog does.
The weights were fitted (Nelder-Mead, two seeds, at the real catalog's size) to five statistics
of the real embeddings of notebook 05's encoder as the kit made it before the encoder had a
projection head: median distance to the 1st and 10th nearest neighbour, median distance between
random pairs, length of the mean vector (the cone) and participation ratio of the covariance
spectrum (the effective number of dimensions). :func:`catalog_statistics` measures them, and the
benchmark report puts the real and synthetic values side by side every time it runs, so the match
is re-checked, not assumed. The encoder with its projection head no longer makes a tight cone; a
refit to it was tried and not adopted, because how the real geometry grows to a million photos is
not known. The results page (``docs/results/README.md``, "Search at scale") has the fitted and
measured values, and what the refit did.

The benchmark
-------------
:func:`run_scale_benchmark` builds every index in :func:`default_configs` with
:class:`~helper_utils.going_further.search_index.SearchIndex` and measures build time, latency of single
queries (one at a time, as a web service receives them: median and p95), latency per query
of one large batch, recall@10 against exact brute force, and index size. It respects the
machine: FAISS, torch and the BLAS behind numpy use as many threads as torch was given
for batches, and **one thread for single queries**, for every method alike. That is how a
search service answers one request (concurrent requests take the other cores), and a second
thread on a query this small only adds synchronisation: on a busy machine the threads of one
query wait for each other at every barrier, which costs far more than the search itself.

``make bench-scale`` (``python -m tools.scale_bench``) runs it at a million items and writes the
JSON, the markdown page and the recall-versus-latency plot under ``docs/results/``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from helper_utils.going_further.search_index import SearchIndex
from helper_utils.retrieval import l2_normalize

__all__ = ["CatalogShape", "IndexConfig", "synthetic_catalog", "catalog_statistics", "real_catalog",
           "default_configs", "benchmark_configs", "single_query_ms", "run_scale_benchmark", "summarize",
           "results_table", "format_speedup", "plot_recall_latency"]

# What would make approximate search worth it for a service: an HNSW index this many times faster per single
# query than exact search, at this recall@10; and the fastest index that keeps almost every neighbour
TARGET_SPEEDUP, TARGET_RECALL, HIGH_RECALL = 100.0, 0.95, 0.99
BRUTE_FORCE = ("exact", "flat")  # exact search: torch and FAISS; speedups are against the faster of the two


# --------------------------------------------------------------------------- synthetic catalog


@dataclass(frozen=True)
class CatalogShape:
    """Parameters of :func:`synthetic_catalog`; the weights were fitted to the real embeddings."""

    points_per_cluster: int = 250  # ~ a product type: n / 250 clusters
    mean_weight: float = 1.45  # pull towards the shared direction: sets the mean vector's length (the cone)
    centre_weight: float = 1.05  # how far apart the centres are: sets the random-pair distance
    spread: float = 0.60  # cluster width: sets the nearest-neighbour distance
    centre_decay: float = 0.17  # power-law exponent of the centres' spectrum
    spread_decay: float = 0.26  # ... and of the within-cluster spectrum: sets the effective dimensions
    anisotropy: float = 0.5  # sigma of the log-normal per-cluster axis scales
    size_skew: float = 1.0  # sigma of the log-normal cluster sizes


def synthetic_catalog(n: int, dim: int = 64, seed: int = 0, shape: CatalogShape = CatalogShape(),
                      chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors from the Gaussian mixture described in the module docstring.

    Args:
        n: how many vectors. Each row is an independent draw, so the last rows of one call
            serve as queries from the same distribution as the rest.
        dim: dimension (the course's encoder gives 64).
        seed: the same seed gives the same catalog.
        shape: the mixture's parameters.
        chunk: rows generated at once (bounds the temporary float64 memory to ``chunk * dim * 8`` bytes).

    Returns:
        A float32 array ``(n, dim)`` with rows of length 1.
    """
    if n < 1 or dim < 2:
        raise ValueError(f"need n >= 1 and dim >= 2, got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    clusters = max(1, round(n / shape.points_per_cluster))
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))  # (dim, dim) random rotation
    direction = np.abs(rng.normal(size=dim))
    direction /= np.linalg.norm(direction)  # non-negative: the cone of pooled ReLU features
    centres = shape.mean_weight * direction + shape.centre_weight * (
        rng.normal(size=(clusters, dim)) * _power_law(dim, shape.centre_decay)) @ basis.T  # (C, dim)
    sizes = rng.lognormal(0.0, shape.size_skew, size=clusters)
    assignment = rng.choice(clusters, size=n, p=sizes / sizes.sum())  # (n,) cluster of each row
    axis_scales = rng.lognormal(0.0, shape.anisotropy, size=(clusters, dim)) * _power_law(dim, shape.spread_decay)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = assignment[start:start + chunk]
        noise = (rng.normal(size=(len(rows), dim)) * axis_scales[rows]) @ basis.T  # (b, dim)
        x = centres[rows] + shape.spread * noise
        out[start:start + chunk] = l2_normalize(x)
    return out


def _power_law(dim: int, exponent: float) -> np.ndarray:
    """Axis scales ``i ** -exponent`` for ``i = 1..dim``, scaled to unit total variance."""
    scales = np.arange(1, dim + 1, dtype=np.float64) ** -exponent
    return scales / np.sqrt((scales ** 2).sum())


def catalog_statistics(catalog: np.ndarray, queries: np.ndarray, k: int = 10, seed: int = 0,
                       max_queries: int = 300) -> dict[str, float]:
    """The geometry the synthetic catalog was fitted to, measured on any catalog.

    Returns:
        ``{"n", "nn1_median", "nn10_median", "pair_median", "mean_length", "effective_dims"}``:
        median distance from a query to its 1st and ``k``-th nearest catalog item (exact), median
        distance between random catalog pairs, length of the catalog's mean vector (1 = all
        identical, 0 = no common direction) and the participation ratio of its covariance
        eigenvalues ``(sum l)^2 / sum l^2`` (how many directions the catalog really fills).
    """
    catalog = _unit(catalog)
    queries = _unit(queries[:max_queries])
    distances, _ = SearchIndex("exact").add(catalog).search(queries, k=min(k, len(catalog)))
    rng = np.random.default_rng(seed)
    a, b = rng.integers(len(catalog), size=(2, 20_000))
    sample = catalog[rng.choice(len(catalog), size=min(len(catalog), 50_000), replace=False)].astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(np.cov(sample.T))
    return {"n": int(len(catalog)),
            "nn1_median": float(np.median(distances[:, 0])),
            f"nn{k}_median": float(np.median(distances[:, -1])),
            "pair_median": float(np.median(np.linalg.norm(catalog[a] - catalog[b], axis=1))),
            "mean_length": float(np.linalg.norm(catalog.mean(axis=0, dtype=np.float64))),
            "effective_dims": float(eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum())}


def _unit(x: np.ndarray) -> np.ndarray:
    return l2_normalize(x)


def real_catalog(device: Any = "cpu") -> dict[str, Any]:
    """The course's real catalog: validation + train photos embedded by notebook 05's encoder.

    Loads ``checkpoints/encoder_best.pt`` (or trains it, see :func:`load_or_train_encoder`).

    Returns:
        ``{"catalog": (N, 64), "labels", "ids", "queries": (Q, 64) test photos, "query_labels",
        "query_ids", "message"}``; ids are the photos' paths relative to ``dataset_dir()``.
    """
    from helper_utils.data import ClothingDataset, dataset_dir
    from helper_utils.recipes import load_or_train_encoder
    from helper_utils.reference import get_embeddings, val_transform

    encoder, message = load_or_train_encoder(device)  # bars only if it has to train
    parts = {}
    for split in ("validation", "train", "test"):
        dataset = ClothingDataset(split, transform=val_transform)
        embeddings = get_embeddings(encoder, dataset, device, batch_size=256)
        names = [str(Path(p).relative_to(dataset_dir())) for p, _ in dataset.samples]
        parts[split] = (embeddings, [dataset.classes[t] for t in dataset.targets], names)
    return {"catalog": np.concatenate([parts["validation"][0], parts["train"][0]]),
            "labels": parts["validation"][1] + parts["train"][1],
            "ids": parts["validation"][2] + parts["train"][2],
            "queries": parts["test"][0], "query_labels": parts["test"][1], "query_ids": parts["test"][2],
            "message": message}


# --------------------------------------------------------------------------- benchmark


@dataclass
class IndexConfig:
    """One index to build and the query-time settings to measure on it."""

    backend: str
    build: dict = field(default_factory=dict)  # SearchIndex parameters fixed at build time
    searches: list = field(default_factory=lambda: [{}])  # one measured row per query-time setting

    def name(self, search: dict) -> str:
        params = {**self.build, **search}
        return " ".join([self.backend] + [f"{k}={v}" for k, v in params.items() if k != "ef_construction"])


def default_configs(n: int, hnsw_m: Sequence[int] = (16, 32), ef_construction: int = 100,
                    ef_search: Sequence[int] = (16, 32, 64, 128, 256, 512),
                    nprobe: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128)) -> list[IndexConfig]:
    """Exact, FAISS flat, HNSW per ``M`` over ``ef_search``, IVF over ``nprobe``, sized for ``n`` items.

    ``ef_construction=100`` rather than the SearchIndex default of 200: building a million-item
    graph is the slowest step here, and the lower value already reaches the high-recall target on
    this data (the results page has the run). IVF gets ``nlist = min(1024, 4 * sqrt(n))`` cells:
    the cap keeps k-means training (on up to 256 points per cell) short on a laptop.
    """
    nlist = max(1, min(1024, round(4 * n ** 0.5)))
    return ([IndexConfig("exact"), IndexConfig("flat")]
            + [IndexConfig("hnsw", {"M": m, "ef_construction": ef_construction},
                           [{"ef_search": e} for e in ef_search]) for m in hnsw_m]
            + [IndexConfig("ivf", {"nlist": nlist}, [{"nprobe": p} for p in nprobe if p <= nlist])])


def benchmark_configs(catalog: np.ndarray, queries: np.ndarray, configs: Sequence[IndexConfig], k: int = 10,
                      n_single: int = 200, log: Callable[[str], None] = print) -> list[dict]:
    """Build each index on ``catalog`` and measure it on ``queries``; the first config must be exact.

    Returns:
        One dict per (config, search setting): ``method``, ``backend``, ``params``, ``build_s``,
        ``single_median_ms``, ``single_p95_ms`` (``n_single`` queries one at a time, after one
        warm-up), ``batch_ms_per_query`` (all queries in one call), ``recall_at_k`` (share of the
        exact top ``k`` found, averaged over queries), ``index_bytes``, ``speedup_single`` (the
        faster brute force's single-query median, torch ``exact`` or FAISS ``flat``, / this one).
    """
    if not configs or configs[0].backend != "exact":
        raise ValueError("the first config must be exact brute force: it is the ground truth")
    rows, truth = [], None
    for config in configs:
        start = time.perf_counter()
        index = SearchIndex(config.backend, **config.build).add(catalog)
        build_s = time.perf_counter() - start
        size = index.nbytes
        for search in config.searches:
            index.set_search_params(**search)
            row = {"method": config.name(search), "backend": config.backend, "params": {**index.params},
                   "build_s": build_s, "index_bytes": size, **_latency(index, queries, k, n_single)}
            found = row.pop("indices")
            truth = found if truth is None else truth
            row["recall_at_k"] = _recall(found, truth)
            rows.append(row)
            log(f"  {row['method']:<28} build {build_s:7.1f} s  single {row['single_median_ms']:8.3f} ms "
                f"(p95 {row['single_p95_ms']:.3f})  batch {row['batch_ms_per_query']:.4f} ms/q  "
                f"recall@{k} {row['recall_at_k']:.4f}  {size / 2**20:.0f} MiB")
        del index
    baseline = min(r["single_median_ms"] for r in rows if r["backend"] in BRUTE_FORCE)
    for row in rows:
        row["speedup_single"] = baseline / row["single_median_ms"]
    return rows


def single_query_ms(index: SearchIndex, queries: np.ndarray, k: int = 10, n: int = 200) -> np.ndarray:
    """Latency in ms of each of the first ``n`` queries, searched one at a time on one thread.

    One thread, as a search service answers one request (see the module docstring); one
    warm-up query first, so that one-off costs (page faults, thread pools) are not counted.
    """
    times = []
    with _threads(1):
        index.search(queries[0], k)
        for query in queries[:n]:
            start = time.perf_counter()
            index.search(query, k)
            times.append(time.perf_counter() - start)
    return 1000 * np.asarray(times)


def _latency(index: SearchIndex, queries: np.ndarray, k: int, n_single: int) -> dict:
    single_ms = single_query_ms(index, queries, k, n_single)
    start = time.perf_counter()
    _, indices = index.search(queries, k)
    batch = time.perf_counter() - start
    return {"single_median_ms": float(np.median(single_ms)), "single_p95_ms": float(np.percentile(single_ms, 95)),
            "batch_ms_per_query": 1000 * batch / len(queries), "indices": indices}


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true neighbours that were found (padding -1 never matches)."""
    hits = [len(np.intersect1d(f, t)) for f, t in zip(found, truth)]
    return float(np.mean(hits) / truth.shape[1])


@contextlib.contextmanager
def _threads(n: int):
    """Let FAISS (OpenMP), torch and numpy's BLAS use ``n`` threads inside the block."""
    import faiss
    import torch

    before, torch_before = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(n)
    try:
        with limits:
            yield
    finally:
        faiss.omp_set_num_threads(before)
        torch.set_num_threads(torch_before)


def run_scale_benchmark(n: int = 1_000_000, dim: int = 64, n_queries: int = 1000, n_single: int = 200,
                        k: int = 10, seed: int = 0, configs: Sequence[IndexConfig] | None = None,
                        real: bool = True, threads: int | None = None,
                        log: Callable[[str], None] = print) -> dict:
    """Exact against approximate search on an ``n``-item synthetic catalog (and the real one).

    Args:
        n: synthetic catalog size.
        dim: embedding dimension.
        n_queries: queries drawn from the same mixture, searched as one batch and used for recall.
        n_single: how many of them are also timed one at a time.
        k: neighbours per query (recall@k).
        seed: seeds the catalog and queries.
        configs: indexes to compare (default :func:`default_configs`); the first must be exact.
        real: also run the configs (re-sized) on the course's real catalog and compare its geometry.
        threads: threads for FAISS and BLAS; default torch's thread count.

    Returns:
        A JSON-ready dict: ``setup`` (sizes, seed, threads, machine, versions, date), ``synthetic``
        (rows as in :func:`benchmark_configs`), ``summary`` (:func:`summarize`), ``geometry``
        (:func:`catalog_statistics` of the real and synthetic catalogs) and ``real`` (rows or ``None``).
    """
    import torch

    threads = threads or torch.get_num_threads()
    configs = list(configs) if configs is not None else default_configs(n)
    report = {"setup": _setup(n, dim, n_queries, n_single, k, seed, threads)}
    with _threads(threads):
        start = time.perf_counter()
        data = synthetic_catalog(n + n_queries, dim, seed)
        catalog, queries = data[:n], data[n:]  # independent draws: the queries are new items
        log(f"synthetic catalog {catalog.shape} + {len(queries)} queries in {time.perf_counter() - start:.1f} s")
        report["synthetic"] = benchmark_configs(catalog, queries, configs, k, n_single, log)
        report["summary"] = summarize(report["synthetic"])
        geometry = {"synthetic": catalog_statistics(catalog, queries, k, seed)}
        del catalog, data
        report["real"] = None
        if real:
            found = real_catalog()
            log(f"real catalog {found['catalog'].shape}, {len(found['queries'])} queries. {found['message']}")
            geometry["real"] = catalog_statistics(found["catalog"], found["queries"], k, seed)
            small = synthetic_catalog(len(found["catalog"]) + n_queries, dim, seed)
            geometry["synthetic_same_size"] = catalog_statistics(small[:len(found["catalog"])], small[len(found["catalog"]):], k, seed)
            report["real"] = benchmark_configs(found["catalog"], found["queries"], _resized(configs, len(found["catalog"])),
                                               k, n_single, log)
        report["geometry"] = geometry
    report["setup"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return report


def _resized(configs: Sequence[IndexConfig], n: int) -> list[IndexConfig]:
    """``configs`` for an ``n``-item catalog: IVF gets at most ``4 * sqrt(n)`` cells, and no nprobe above that."""
    resized = []
    for c in configs:
        if c.backend == "ivf":
            nlist = min(c.build.get("nlist") or n, max(1, round(4 * n ** 0.5)))
            c = IndexConfig("ivf", {**c.build, "nlist": nlist}, [s for s in c.searches if s.get("nprobe", 1) <= nlist])
        resized.append(c)
    return resized


def _setup(n, dim, n_queries, n_single, k, seed, threads) -> dict:
    import faiss
    import torch

    from helper_utils.device import machine_description

    return {"n": n, "dim": dim, "n_queries": n_queries, "n_single": n_single, "k": k, "seed": seed,
            "threads": threads, "machine": machine_description(), "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": {"python": platform.python_version(), "numpy": np.__version__, "faiss": faiss.__version__,
                         "torch": torch.__version__},
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": None,  # the CLI fills it in
            "shape": asdict(CatalogShape())}


def summarize(rows: Sequence[dict], target_speedup: float = TARGET_SPEEDUP, target_recall: float = TARGET_RECALL,
              high_recall: float = HIGH_RECALL) -> dict:
    """What the benchmark asks, answered from its rows: is HNSW fast enough, and what keeps recall high.

    Returns:
        ``exact_single_ms`` and ``exact_method``: the faster brute force per single query, the
        baseline of every speedup; ``best_hnsw``: the fastest HNSW row (single-query median) with recall
        at least ``target_recall`` (``None`` if none); ``target_met``: its speedup over exact brute
        force is at least ``target_speedup``; ``fastest_high_recall``: the fastest row of any
        approximate method with recall at least ``high_recall``.
    """
    brute = min((r for r in rows if r["backend"] in BRUTE_FORCE), key=lambda r: r["single_median_ms"])

    def fastest(candidates):
        return min(candidates, key=lambda r: r["single_median_ms"], default=None)

    best_hnsw = fastest([r for r in rows if r["backend"] == "hnsw" and r["recall_at_k"] >= target_recall])
    high = fastest([r for r in rows if r["backend"] in ("hnsw", "ivf") and r["recall_at_k"] >= high_recall])
    return {"exact_single_ms": brute["single_median_ms"], "exact_method": brute["method"], "target_speedup": target_speedup,
            "target_recall": target_recall, "high_recall": high_recall,
            "best_hnsw": best_hnsw and {key: best_hnsw[key] for key in ("method", "single_median_ms", "recall_at_k", "speedup_single")},
            "target_met": bool(best_hnsw and best_hnsw["speedup_single"] >= target_speedup),
            "fastest_high_recall": high and {key: high[key] for key in ("method", "single_median_ms", "recall_at_k", "speedup_single")}}


# --------------------------------------------------------------------------- reporting


def results_table(rows: Sequence[dict], k: int = 10) -> list[str]:
    """Benchmark rows as the lines of a markdown table."""
    lines = [f"| method | build (s) | single query: median (ms) | p95 (ms) | batch (ms/query) | recall@{k} | "
             "speedup vs brute force (single) | index size (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['build_s']:.1f} | {r['single_median_ms']:.3f} | {r['single_p95_ms']:.3f} | "
                     f"{r['batch_ms_per_query']:.4f} | {r['recall_at_k']:.4f} | {format_speedup(r['speedup_single'])} | "
                     f"{r['index_bytes'] / 2**20:.1f} |")
    return lines


def format_speedup(speedup: float) -> str:
    """``238.4`` -> ``"238x"``, ``3.14`` -> ``"3.1x"``: how the tables print a speed-up."""
    return f"{speedup:.0f}x" if speedup >= 10 else f"{speedup:.1f}x"


def plot_recall_latency(report: dict, path: str | os.PathLike | None = None):
    """Recall@k against single-query median latency (log scale), one line per index family."""
    import matplotlib.pyplot as plt

    rows, k = report["synthetic"], report["setup"]["k"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    families: dict[str, list[dict]] = {}
    for r in rows:
        family = r["backend"] + (f" M={r['params']['M']}" if r["backend"] == "hnsw" else "")
        families.setdefault(family, []).append(r)
    for family, members in families.items():
        x = [r["single_median_ms"] for r in members]
        y = [r["recall_at_k"] for r in members]
        ax.plot(x, y, marker="o", linestyle="-" if len(members) > 1 else "none", label=family)
        for r in members:
            setting = r["params"].get("ef_search", r["params"].get("nprobe"))
            if setting is not None:
                ax.annotate(str(setting), (r["single_median_ms"], r["recall_at_k"]), textcoords="offset points",
                            xytext=(4, -9), fontsize=7)
    ax.axhline(TARGET_RECALL, color="grey", linestyle=":", linewidth=1)
    ax.axvline(report["summary"]["exact_single_ms"] / TARGET_SPEEDUP, color="grey", linestyle="--", linewidth=1,
               label=f"exact / {TARGET_SPEEDUP:.0f}")
    ax.set(xscale="log", xlabel="single-query latency, median (ms, log scale)", ylabel=f"recall@{k}",
           title=f"{report['setup']['n']:,} items: recall against latency (labels: ef_search / nprobe)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig
