"""The visual-search UI of notebook 06: pick a catalog photo or upload one, see its nearest neighbours.

The logic lives in plain functions (:func:`load_query_image`, :meth:`VisualSearch.search`)
that tests call directly; :meth:`VisualSearch.widget` only wires them to ipywidgets.

The search runs whatever query embedding and k-nearest search it is given: in notebook 06, the
learner's own ``get_query_img_embedding`` and ``find_closest``. Their results are checked before use,
so an answer that raises or returns something unusable ends a search with one
:class:`SearchFunctionError` line naming the function, never a traceback from deep inside the UI.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from helper_utils.images import MAX_SIDE, MAX_UPLOAD_BYTES, QueryImageError, decode_image
from helper_utils.reference import get_query_img_embedding as reference_query_embedding
from helper_utils.retrieval import knn

__all__ = ["QueryImageError", "MAX_UPLOAD_BYTES", "MAX_SIDE", "load_query_image", "SearchResult",
           "SearchFunctionError", "VisualSearch"]


class SearchFunctionError(ValueError):
    """A query-embedding or k-nearest function raised, or returned something a search cannot use.

    The message is one line that names the function and says what went wrong.
    """


def _knn_find_closest(embeddings: np.ndarray, query_embedding: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` catalog embeddings nearest to one query, nearest first: the kit's exact :func:`knn`.

    The same contract as notebook 06's ``find_closest``; :class:`VisualSearch` uses it by default.
    """
    indices, _ = knn(embeddings, query_embedding, k=k)  # (1, k)
    return indices[0]


def load_query_image(data: bytes, name: str = "upload") -> Image.Image:
    """Decode uploaded bytes into an RGB PIL image, or raise :class:`QueryImageError` saying why.

    A thin name for :func:`helper_utils.images.decode_image`, the kit's one decoder (the dataset
    and the web service use it too): EXIF orientation applied, 16-bit greyscale scaled,
    transparent areas white, JPEG/PNG/WebP only, huge images refused or shrunk to at most
    ``MAX_SIDE`` pixels a side.
    """
    return decode_image(data, name=name)


@dataclass
class SearchResult:
    indices: np.ndarray  # (k,) catalog positions, nearest first
    distances: np.ndarray  # (k,) Euclidean distances
    labels: list[str]  # class name of each result
    seconds: float  # time to embed the query and search


class VisualSearch:
    """Search a catalog of photos by example.

    Args:
        encoder: maps ``(B, 3, 64, 64)`` to ``(B, D)`` embeddings.
        catalog: dataset of ``(PIL image, label)`` with ``.classes`` (a ``ClothingDataset``
            without transform), used to show results.
        embeddings: ``(N, D)`` embeddings of ``catalog``, in its order.
        transform: the validation transform (PIL image -> ``(3, 64, 64)`` tensor).
        device: where the encoder runs.
        get_query_img_embedding: ``(encoder, transform, image, device) -> (1, D)`` array, notebook 06's
            exercise; the kit's reference answer by default.
        find_closest: ``(embeddings, query_embedding, k) -> (k,)`` integer indices, nearest first,
            notebook 06's exercise; the kit's exact :func:`knn` by default. Each search hands it a copy of
            the embeddings (one that changes its input in place cannot spoil the catalog), and the
            distances shown are measured from the embeddings, so it returns indices only.
    """

    def __init__(self, encoder: torch.nn.Module, catalog, embeddings: np.ndarray, transform: Callable,
                 device: torch.device | str = "cpu", *,
                 get_query_img_embedding: Callable = reference_query_embedding,
                 find_closest: Callable = _knn_find_closest) -> None:
        if len(catalog) != len(embeddings):
            raise ValueError(f"{len(catalog)} catalog items but {len(embeddings)} embeddings")
        for name, fn in (("get_query_img_embedding", get_query_img_embedding), ("find_closest", find_closest)):
            if not callable(fn):
                raise TypeError(f"{name} should be a function, got {type(fn).__name__}: pass the function itself")
        self.encoder, self.catalog, self.embeddings = encoder, catalog, np.asarray(embeddings)
        self.transform, self.device = transform, device
        self.get_query_img_embedding, self.find_closest = get_query_img_embedding, find_closest

    def search(self, image: Image.Image, k: int = 5, exclude: int | None = None) -> SearchResult:
        """The ``k`` catalog items nearest to ``image``; ``exclude`` leaves one catalog index out (the query itself).

        Raises:
            SearchFunctionError: ``get_query_img_embedding`` or ``find_closest`` raised, or returned
                something that is not a usable embedding or list of catalog indices.
        """
        start = time.perf_counter()
        query = _call("get_query_img_embedding", self.get_query_img_embedding,
                      self.encoder, self.transform, image, self.device)
        query = _as_query(query, self.embeddings.shape[1])  # (1, D)
        wanted = min(k + (exclude is not None), len(self.embeddings))
        indices = _call("find_closest", self.find_closest, self.embeddings.copy(), query, wanted)
        indices = _as_indices(indices, wanted, len(self.embeddings))  # (wanted,)
        if exclude is not None:
            indices = indices[indices != exclude][:k]
        distances = np.linalg.norm(self.embeddings[indices].astype(np.float64) - query.astype(np.float64),
                                   axis=1)  # (k,), measured here: find_closest returns indices only
        seconds = time.perf_counter() - start
        labels = [self.catalog.classes[self.catalog.targets[i]] for i in indices]
        return SearchResult(indices, distances, labels, seconds)

    def search_upload(self, data: bytes, name: str = "upload", k: int = 5) -> SearchResult:
        return self.search(load_query_image(data, name), k)

    def widget(self, k: int = 5, choices: Sequence[int] | None = None):
        """An ipywidgets UI: a catalog picker, an upload button, a k slider and the results."""
        import ipywidgets as widgets
        import matplotlib.pyplot as plt
        from IPython.display import display

        from helper_utils.plotting import show_search_results

        choices = list(choices) if choices is not None else list(range(len(self.catalog)))
        options = [(f"#{i} {self.catalog.classes[self.catalog.targets[i]]}", i) for i in choices]
        picker = widgets.Dropdown(options=options, description="Catalog:")
        upload = widgets.FileUpload(accept=".jpg,.jpeg,.png,image/*", multiple=False, description="Upload")
        k_slider = widgets.IntSlider(value=k, min=1, max=min(12, len(self.catalog) - 1), description="k")
        status = widgets.HTML()
        output = widgets.Output()

        current = {}  # the query on show, so that moving k searches it again (a catalog pick or an upload)

        def show(query: Image.Image, source: str, query_label: str | None = None,
                 exclude: int | None = None) -> None:
            current.update(query=query, source=source, query_label=query_label, exclude=exclude)
            try:
                result = self.search(query, k_slider.value, exclude=exclude)
            except SearchFunctionError as error:
                refuse(f"Search failed: {error}")
                return
            with output:
                output.clear_output(wait=True)
                images = [self.catalog[i][0] for i in result.indices]
                show_search_results(query, images, result.labels, result.distances, query_label)
                plt.show()
            status.value = html.escape(f"{source}: top {len(result.indices)} in {result.seconds * 1000:.1f} ms")

        def refuse(message: str) -> None:
            current.clear()  # the results on show belong to an earlier query: they go, the message stays
            output.clear_output()
            status.value = f"<span style='color:#b00'>{html.escape(message)}</span>"

        def on_pick(_=None) -> None:
            index = picker.value
            if index is None:  # emptied by an upload: no catalog photo is the query
                return
            query, label = self.catalog[index]
            show(query, f"catalog #{index}", self.catalog.classes[label], exclude=index)

        def on_k(_) -> None:
            if current:  # nothing to search again after a refused upload
                show(**current)

        def on_upload(change) -> None:
            files = _uploaded_files(change["new"])
            if not files:
                return
            name, data = files[0]
            picker.value = None  # the query is not a catalog photo now; picking one, even the same, searches it
            try:
                query = load_query_image(data, name)
            except QueryImageError as error:
                refuse(str(error))
                return
            show(query, f"upload {name}")

        picker.observe(on_pick, names="value")
        k_slider.observe(on_k, names="value")
        upload.observe(on_upload, names="value")
        ui = widgets.VBox([widgets.HBox([picker, upload, k_slider]), status, output])
        on_pick()
        display(ui)
        return ui


def _uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, bytes) of FileUpload's value: a tuple of dicts in ipywidgets 8, a dict in 7."""
    items = value.values() if isinstance(value, dict) else value
    files = []
    for item in items:
        content = item["content"]
        files.append((item.get("name") or item.get("metadata", {}).get("name", "upload"), bytes(content)))
    return files


_FIX = "fix it, run its cell, then create the VisualSearch again"


def _call(name: str, fn: Callable, *args):
    """``fn(*args)``; whatever it raises becomes one :class:`SearchFunctionError` line naming ``name``."""
    try:
        return fn(*args)
    except (Exception, SystemExit) as error:  # learner code may raise anything, sys.exit included
        lines = str(error).strip().splitlines()
        detail = lines[0][:200] if lines else "(no message)"
        raise SearchFunctionError(f"`{name}` raised {type(error).__name__}: {detail}; {_FIX}") from error


def _as_array(value, name: str, expected: str) -> np.ndarray:
    """``value`` (an array, a tensor or a list) as a NumPy array, or a :class:`SearchFunctionError` saying what it is."""
    if value is None or isinstance(value, (str, bytes, dict)):
        what = "None" if value is None else f"a {type(value).__name__}"
        raise SearchFunctionError(f"`{name}` returned {what}, not {expected}; {_FIX}")
    try:
        array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise SearchFunctionError(f"`{name}` returned a {type(value).__name__} that is not {expected}; "
                                  f"{_FIX}") from error
    if array.dtype == object:
        raise SearchFunctionError(f"`{name}` returned a {type(value).__name__} that is not {expected}; {_FIX}")
    return array


def _as_query(value, dim: int) -> np.ndarray:
    """The query embedding as a ``(1, D)`` array of its own dtype, checked against the catalog's ``D``."""
    expected = f"a (1, {dim}) array of numbers"
    array = _as_array(value, "get_query_img_embedding", expected)
    if array.shape not in ((1, dim), (dim,)) or not np.issubdtype(array.dtype, np.number):
        raise SearchFunctionError(f"`get_query_img_embedding` returned {array.dtype} values of shape {array.shape}, "
                                  f"not {expected} like the catalog's embeddings; {_FIX}")
    array = array.reshape(1, dim)
    if not np.isfinite(array).all():
        raise SearchFunctionError(f"`get_query_img_embedding` returned NaN or infinite values; {_FIX}")
    return array


def _as_indices(value, k: int, size: int) -> np.ndarray:
    """``find_closest``'s answer as ``k`` int64 catalog indices, checked: integers, one row, in the catalog."""
    expected = f"{k} catalog indices (integers)"
    array = _as_array(value, "find_closest", expected)
    if not np.issubdtype(array.dtype, np.integer):  # bool is not an integer type here
        raise SearchFunctionError(f"`find_closest` returned {array.dtype} values, not {expected}; {_FIX}")
    if array.shape != (k,):
        raise SearchFunctionError(f"`find_closest` returned shape {array.shape} for k={k}, not ({k},): "
                                  f"the indices of the k nearest, as one row; {_FIX}")
    outside = array[(array < 0) | (array >= size)]
    if len(outside):
        raise SearchFunctionError(f"`find_closest` returned index {outside[0]}, outside the catalog's "
                                  f"0..{size - 1}; {_FIX}")
    return array.astype(np.int64)
