"""One k-nearest-neighbour index over exact and FAISS back ends, saved to disk and loaded back.

Notebook 06 searches 276 photos by brute force, which is right at that size: it is exact and
takes microseconds. A shop with millions of products needs an approximate index instead.
:class:`SearchIndex` puts the choices behind one interface, so a notebook, a benchmark or a
web service can switch back end with one word:

==========  ============================  ==========================================================
back end    structure                     trade-off
==========  ============================  ==========================================================
``exact``   ``retrieval.knn``             every query reads all N vectors: exact, O(N) per query
``flat``    ``faiss.IndexFlatL2``         the same exact search in FAISS's optimised kernels
``hnsw``    ``faiss.IndexHNSWFlat``       a navigable small-world graph: ~O(log N) hops per query;
                                          ``M`` (links per node) and ``ef_search`` (breadth of the
                                          search) buy recall with memory and time
``ivf``     ``faiss.IndexIVFFlat``        k-means cells (``nlist``); a query scans the ``nprobe``
                                          nearest cells only; trained on the first ``add``
==========  ============================  ==========================================================

With ``normalize=True`` (the default, as in the course) embeddings and queries are
L2-normalised, so Euclidean distance ranks like cosine similarity. Distances are Euclidean,
not squared (FAISS computes squared distances; the square root is taken here).

On disk an index is a **directory**::

    <path>/
        meta.json        back end, parameters, dim, size, labels, ids, sha256 of the data file
        index.faiss      faiss.write_index output (flat, hnsw, ivf)   -- or --
        embeddings.npy   the normalised float32 vectors (exact)

:meth:`SearchIndex.save` writes everything into a temporary directory beside ``path`` and
renames it into place, so a failure part-way leaves nothing half-written and an older index
at ``path`` untouched. :meth:`SearchIndex.load` checks the data file against its recorded
sha256 before reading it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helper_utils.retrieval import l2_normalize

from helper_utils.files import sha256_file
from helper_utils.retrieval import knn

__all__ = ["SearchIndex"]

FORMAT_VERSION = 1
META_FILE = "meta.json"
FAISS_FILE = "index.faiss"
EXACT_FILE = "embeddings.npy"

# Parameters each back end accepts, with defaults and the reason for each default.
_BUILD_PARAMS = {
    "exact": {},
    "flat": {},
    "hnsw": {"M": 32,  # links per node: 32 keeps recall@10 high on 64-d data at ~256 B/vector of graph
             "ef_construction": 200},  # search breadth while building: a better graph, built once
    "ivf": {"nlist": None},  # cells; None = about 4 * sqrt(N) at the first add (a common rule of thumb)
}
_SEARCH_PARAMS = {
    "exact": {},
    "flat": {},
    "hnsw": {"ef_search": 64},  # candidates kept while searching: recall vs latency, tunable per query batch
    "ivf": {"nprobe": 16},  # cells scanned per query: recall vs latency
}


class SearchIndex:
    """k-nearest-neighbour search over a catalog of embeddings, with one API for every back end.

    Args:
        backend: one of :attr:`BACKENDS`.
        normalize: L2-normalise embeddings and queries (the course compares unit vectors).
        **params: back-end parameters: ``M``, ``ef_construction``, ``ef_search`` for ``hnsw``;
            ``nlist``, ``nprobe`` for ``ivf``. Unknown names raise ``ValueError``.

    Attributes:
        labels: one label per row (``None`` where none was given), in row order.
        ids: one string id per row (file name, URL, ...), ``"0"``, ``"1"``, ... by default.
        params: the back end's parameters, build and search time.

    Example::

        index = SearchIndex("hnsw", ef_search=128).add(embeddings, labels=labels, ids=paths)
        distances, rows = index.search(query_embedding, k=5)
        index.save("checkpoints/catalog_index")
        same = SearchIndex.load("checkpoints/catalog_index")
    """

    BACKENDS = ("exact", "flat", "hnsw", "ivf")

    def __init__(self, backend: str = "exact", *, normalize: bool = True, **params: Any) -> None:
        if backend not in self.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(self.BACKENDS)}")
        allowed = {**_BUILD_PARAMS[backend], **_SEARCH_PARAMS[backend]}
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"backend {backend!r} has no parameter {', '.join(map(repr, unknown))}; "
                             f"it accepts: {', '.join(allowed) or 'none'}")
        self.backend = backend
        self.normalize = bool(normalize)
        self.params = {**allowed, **{name: _check_param(name, value) for name, value in params.items()}}
        self.labels: list = []
        self.ids: list[str] = []
        self._dim: int | None = None
        self._vectors: np.ndarray | None = None  # exact back end: (N, D) float32
        self._sq_norms = None  # exact back end: (N,) squared lengths, computed once, not per query
        self._index = None  # faiss back ends

    # ----------------------------------------------------------------------- building

    def add(self, embeddings: Any, labels: Sequence | None = None, ids: Sequence[str] | None = None) -> "SearchIndex":
        """Append ``embeddings`` (and their labels and ids) to the index; returns the index.

        Args:
            embeddings: ``(N, D)`` float array or tensor (``(D,)`` for a single one).
            labels: ``N`` labels (str or int), or ``None``.
            ids: ``N`` unique string ids, or ``None`` for the row numbers as strings.

        Raises:
            ValueError: for an empty or non-finite array, a dimension unlike the index's,
                lengths that differ, repeated ids, or (``ivf``) fewer vectors than cells.
        """
        vectors = self._prepare(embeddings, "embeddings")
        n = len(vectors)
        labels = [None] * n if labels is None else [_plain(v) for v in labels]
        ids = [str(len(self) + i) for i in range(n)] if ids is None else [str(v) for v in ids]
        for name, values in (("labels", labels), ("ids", ids)):
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} embeddings")
        repeated = _repeated(self.ids, ids)
        if repeated:
            raise ValueError(f"ids must be unique; already used or repeated: {repeated[:5]}")
        if self.backend == "exact":
            self._vectors = vectors if self._vectors is None else np.concatenate([self._vectors, vectors])
            self._sq_norms = None  # recomputed on the next search
        else:
            if self._index is None:
                self._index = self._new_faiss_index(vectors)
            self._index.add(vectors)
        self._dim = vectors.shape[1]
        self.labels += labels
        self.ids += ids
        return self

    def _new_faiss_index(self, first: np.ndarray):
        """Create (and for IVF, train on ``first``) the FAISS index for this back end."""
        faiss = _faiss()
        dim = first.shape[1]
        if self.backend == "flat":
            index = faiss.IndexFlatL2(dim)
        elif self.backend == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.params["M"])
            index.hnsw.efConstruction = self.params["ef_construction"]
        else:  # ivf: k-means cells learnt from the first batch
            nlist = self.params["nlist"] or max(1, min(len(first), round(4 * len(first) ** 0.5)))
            if nlist > len(first):
                raise ValueError(f"ivf with nlist={nlist} needs at least {nlist} vectors in the first add "
                                 f"(to train its cells), got {len(first)}: lower nlist or add more at once")
            self.params["nlist"] = nlist
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
            index.train(first)
        self._apply_search_params(index)
        return index

    # ----------------------------------------------------------------------- searching

    def search(self, queries: Any, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows to each query, nearest first.

        Note the order of the pair: ``(distances, indices)`` as in FAISS, unlike
        :func:`helper_utils.retrieval.knn`, which returns ``(indices, distances)``.

        Args:
            queries: ``(Q, D)`` or a single ``(D,)`` query (array or tensor).
            k: neighbours per query, at most ``len(self)``.

        Returns:
            ``(distances, indices)``, both ``(Q, k)``: float32 Euclidean distances and int64 row
            numbers (look up ``labels``/``ids`` with them). An approximate back end that finds
            fewer than ``k`` rows (``ivf`` with a small ``nprobe``) pads with index -1 and
            distance ``inf``.

        Raises:
            ValueError: for an empty index, ``k`` not in ``1..len(self)``, a dimension unlike
                the index's, or non-finite queries.
        """
        if len(self) == 0:
            raise ValueError("the index is empty: add embeddings before searching")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(self):
            raise ValueError(f"k should be an integer from 1 to the index size {len(self)}, got {k!r}")
        queries = self._prepare(queries, "queries")
        if self.backend == "exact":  # the kit's one exact search, with the catalog's norms kept between calls
            if self._sq_norms is None:
                self._sq_norms = _squared_norms(self._vectors)
            indices, distances = knn(self._vectors, queries, int(k), squared_norms=self._sq_norms)
            return distances.astype(np.float32), indices
        squared, indices = self._index.search(queries, int(k))
        distances = np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)
        distances[indices < 0] = np.inf
        return distances, indices.astype(np.int64, copy=False)

    def set_search_params(self, **params: Any) -> "SearchIndex":
        """Change query-time parameters (``ef_search`` for hnsw, ``nprobe`` for ivf); returns the index."""
        allowed = _SEARCH_PARAMS[self.backend]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"backend {self.backend!r} has no search parameter {', '.join(map(repr, unknown))}; "
                             f"it accepts: {', '.join(allowed) or 'none'}")
        self.params.update({name: _check_param(name, value) for name, value in params.items()})
        if self._index is not None:
            self._apply_search_params(self._index)
        return self

    def _apply_search_params(self, index) -> None:
        if self.backend == "hnsw":
            index.hnsw.efSearch = self.params["ef_search"]
        elif self.backend == "ivf":
            index.nprobe = self.params["nprobe"]

    # ----------------------------------------------------------------------- inspection

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int | None:
        """Embedding dimension, ``None`` until the first :meth:`add`."""
        return self._dim

    @property
    def nbytes(self) -> int:
        """Size of the searchable structure in bytes (vectors plus graph or cells; not labels/ids)."""
        if self.backend == "exact":
            return 0 if self._vectors is None else int(self._vectors.nbytes)
        return 0 if self._index is None else int(_faiss().serialize_index(self._index).size)

    def __repr__(self) -> str:
        return f"SearchIndex({self.backend!r}, size={len(self)}, dim={self.dim}, params={self.params})"

    def _prepare(self, x: Any, name: str) -> np.ndarray:
        """``x`` as a C-contiguous float32 ``(N, D)`` array, checked and (optionally) normalised."""
        if hasattr(x, "detach"):  # a torch tensor, without importing torch here
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name} should be a non-empty (N, D) or (D,) array, got shape {x.shape}")
        if self._dim is not None and x.shape[1] != self._dim:
            raise ValueError(f"{name} have {x.shape[1]} dimensions but the index holds {self._dim}-d vectors")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contain NaN or infinite values (row {int(np.argmin(np.isfinite(x).all(1)))})")
        if self.normalize:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ValueError(f"{name} contain an all-zero vector (row {int(np.argmin(norms[:, 0]))}), "
                                 "which cannot be L2-normalised")
            x = l2_normalize(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    # ----------------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to the directory ``path`` (see the module docstring), atomically.

        Returns:
            ``path`` as a ``Path``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; a saved index is readable like any checkpoint
            self._write(tmp)
            _swap_into_place(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def _write(self, folder: Path) -> None:
        if self.backend == "exact":
            data_file = folder / EXACT_FILE
            np.save(data_file, self._vectors if self._vectors is not None else np.zeros((0, 0), np.float32))
        else:
            data_file = folder / FAISS_FILE
            if self._index is not None:
                _faiss().write_index(self._index, str(data_file))
            else:
                data_file.write_bytes(b"")
        meta = {"format": FORMAT_VERSION, "backend": self.backend, "normalize": self.normalize,
                "params": self.params, "dim": self._dim, "size": len(self), "data_file": data_file.name,
                "sha256": sha256_file(data_file), "labels": self.labels, "ids": self.ids}
        (folder / META_FILE).write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SearchIndex":
        """Read an index written by :meth:`save`.

        Raises:
            FileNotFoundError: nothing is at ``path``.
            ValueError: ``path`` is not a saved index, or its files are corrupt or inconsistent.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no saved SearchIndex at {path}: build one and call .save({str(path)!r})")
        meta = _read_meta(path)  # every field checked: types, ranges, the data file's exact name
        data_file = path / meta["data_file"]  # EXACT_FILE or FAISS_FILE, inside ``path``: never a path from the file
        if data_file.is_symlink() or not data_file.is_file() or sha256_file(data_file) != meta["sha256"]:
            raise ValueError(f"{data_file} is missing or does not match the sha256 in {META_FILE}: the saved "
                             "index is corrupt; rebuild it and save again")
        index = cls(meta["backend"], normalize=meta["normalize"], **{
            name: value for name, value in meta["params"].items() if name != "nlist" or value is not None})
        index.params = dict(meta["params"])
        index.labels, index.ids, index._dim = list(meta["labels"]), list(meta["ids"]), meta["dim"]
        if meta["size"]:
            if index.backend == "exact":
                index._vectors = _load_vectors(data_file, meta["size"], meta["dim"])
            else:
                index._index = _load_faiss(data_file, meta["size"], meta["dim"])
                index._apply_search_params(index._index)
        return index


# --------------------------------------------------------------------------- helpers


def _squared_norms(vectors: np.ndarray):
    import torch

    items = torch.from_numpy(vectors)  # (N, D), shares memory
    return (items * items).sum(dim=1)  # (N,)


def _check_param(name: str, value: Any) -> Any:
    if name == "nlist" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} should be a positive integer, got {value!r}")
    return int(value)


def _plain(value: Any) -> Any:
    """A label as a JSON-friendly str or int (numpy scalars become Python ones)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"labels should be str or int, got {value!r} ({type(value).__name__})")
    return value


def _repeated(existing: list[str], new: list[str]) -> list[str]:
    seen, repeated = set(existing), []
    for value in new:
        if value in seen:
            repeated.append(value)
        seen.add(value)
    return repeated


_MAX_META_BYTES = 512 * 1024 * 1024  # ids and labels of ~5M items; more is not an index this kit wrote
_MAX_ITEMS = 100_000_000
_MAX_DIM = 65_536


def _read_meta(path: Path) -> dict:
    """``meta.json``, every field checked; a ValueError that names the field for anything else."""
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise ValueError(f"{path} is not a saved SearchIndex (no {META_FILE} inside)")
    try:
        if meta_file.stat().st_size > _MAX_META_BYTES:
            raise ValueError(f"larger than {_MAX_META_BYTES // 2**20} MB")
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as err:
        raise ValueError(f"{meta_file} is corrupt ({type(err).__name__}: {str(err)[:100]}); rebuild the index "
                         "and save it again") from None
    needed = {"format", "backend", "normalize", "params", "dim", "size", "data_file", "sha256", "labels", "ids"}
    if not isinstance(meta, dict) or not needed <= set(meta):
        raise ValueError(f"{meta_file} lacks {sorted(needed - set(meta if isinstance(meta, dict) else {}))}: "
                         "not an index saved by SearchIndex.save")
    if meta["format"] != FORMAT_VERSION or type(meta["format"]) is not int or meta["backend"] not in SearchIndex.BACKENDS:
        raise ValueError(f"{meta_file} has format {_short(meta['format'])} and backend {_short(meta['backend'])}; this "
                         f"version reads format {FORMAT_VERSION} with a backend in {SearchIndex.BACKENDS}")

    def bad(field: str, expected: str) -> ValueError:
        return ValueError(f"{meta_file}: {field} should be {expected}, got {_short(meta.get(field))}; the file was "
                          "edited or damaged: rebuild the index and save it again")

    backend = meta["backend"]
    expected_file = EXACT_FILE if backend == "exact" else FAISS_FILE
    if meta["data_file"] != expected_file:  # a name, never a path: nothing outside the folder is read
        raise bad("data_file", f"{expected_file!r} for the {backend} back end")
    if not isinstance(meta["sha256"], str) or len(meta["sha256"]) != 64 or not all(c in "0123456789abcdef" for c in meta["sha256"]):
        raise bad("sha256", "64 lowercase hex digits")
    if type(meta["normalize"]) is not bool:
        raise bad("normalize", "true or false")
    if not _is_int(meta["size"], 0, _MAX_ITEMS):
        raise bad("size", f"an integer from 0 to {_MAX_ITEMS}")
    if not (meta["dim"] is None and meta["size"] == 0) and not _is_int(meta["dim"], 1, _MAX_DIM):
        raise bad("dim", f"an integer from 1 to {_MAX_DIM}")
    params, allowed = meta["params"], {**_BUILD_PARAMS[backend], **_SEARCH_PARAMS[backend]}
    if not isinstance(params, dict) or set(params) != set(allowed):
        raise bad("params", f"an object with exactly {sorted(allowed) or 'no keys'} for the {backend} back end")
    for name, value in params.items():
        try:
            _check_param(name, value)
        except ValueError as err:
            raise bad("params", f"valid values ({err})") from None
    ids, labels = meta["ids"], meta["labels"]
    if not isinstance(ids, list) or len(ids) != meta["size"] or not all(isinstance(v, str) for v in ids):
        raise bad("ids", f"a list of {meta['size']} strings")
    if len(set(ids)) != len(ids):
        raise bad("ids", "unique")
    if (not isinstance(labels, list) or len(labels) != meta["size"]
            or not all(v is None or (isinstance(v, (str, int)) and not isinstance(v, bool)) for v in labels)):
        raise bad("labels", f"a list of {meta['size']} strings or integers")
    return meta


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _short(value: Any) -> str:
    """A value from a file, fit for a message: its repr, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load_vectors(data_file: Path, size: int, dim: int) -> np.ndarray:
    """The exact back end's ``(size, dim)`` float32 array; its header is checked before any data is read."""
    try:
        with open(data_file, "rb") as f:
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f"npy format {version} (np.save writes 1.0)")
            shape, fortran, dtype = readers[version](f)  # the header only: at most 10 kB are parsed
            header_end = f.tell()
        if shape != (size, dim) or dtype != np.float32 or fortran:
            raise ValueError(f"holds a {dtype} array of shape {shape}, expected float32 ({size}, {dim})")
        if data_file.stat().st_size != header_end + size * dim * 4:
            raise ValueError("its length does not match its header")
        vectors = np.load(data_file, allow_pickle=False)
    except (OSError, ValueError, EOFError, MemoryError) as err:
        raise ValueError(f"{data_file} is not the index's vectors ({str(err)[:120]}); rebuild the index") from None
    if not np.isfinite(vectors).all():
        raise ValueError(f"{data_file} holds NaN or infinite vectors; rebuild the index")
    return vectors


def _load_faiss(data_file: Path, size: int, dim: int):
    try:
        index = _faiss().read_index(str(data_file))
    except (RuntimeError, MemoryError, ValueError) as err:
        raise ValueError(f"{data_file} is not a readable FAISS index ({type(err).__name__}); rebuild the index") from None
    if index.ntotal != size or index.d != dim:
        raise ValueError(f"{data_file} holds {index.ntotal} vectors of {index.d} dimensions, but {META_FILE} says "
                         f"{size} of {dim}; rebuild the index")
    return index


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished directory ``tmp`` to ``path``; an older index there is replaced, not merged.

    A rename is atomic, but a non-empty directory cannot be renamed over another, so an older
    index is first moved aside and deleted only once the new one is in place.
    """
    if not path.exists():
        os.rename(tmp, path)
        return
    if not path.is_dir() or not (path / META_FILE).is_file():
        raise FileExistsError(f"{path} exists and is not a saved SearchIndex: not overwriting it")
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.rename(path, old)  # onto the empty placeholder directory: allowed, and atomic
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)  # put the previous index back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _faiss():
    """Import FAISS on first use, so ``import helper_utils.retrieval`` stays light."""
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is a declared dependency
        raise ImportError("the flat, hnsw and ivf back ends need FAISS: pip install faiss-cpu") from err
    return faiss
