"""The visual-search UI of notebook 06: pick a catalog photo or upload one, see its nearest neighbours.

The logic lives in plain functions (:func:`load_query_image`, :meth:`VisualSearch.search`)
that tests call directly; :meth:`VisualSearch.widget` only wires them to ipywidgets.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from helper_utils.images import MAX_PIXELS, MAX_SIDE, MAX_UPLOAD_BYTES, QueryImageError, decode_image
from helper_utils.reference import get_query_img_embedding
from helper_utils.retrieval import knn

__all__ = ["QueryImageError", "MAX_UPLOAD_BYTES", "MAX_SIDE", "MAX_PIXELS", "load_query_image", "SearchResult",
           "VisualSearch"]


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
    """

    def __init__(self, encoder: torch.nn.Module, catalog, embeddings: np.ndarray, transform: Callable,
                 device: torch.device | str = "cpu") -> None:
        if len(catalog) != len(embeddings):
            raise ValueError(f"{len(catalog)} catalog items but {len(embeddings)} embeddings")
        self.encoder, self.catalog, self.embeddings = encoder, catalog, np.asarray(embeddings)
        self.transform, self.device = transform, device

    def search(self, image: Image.Image, k: int = 5, exclude: int | None = None) -> SearchResult:
        """The ``k`` catalog items nearest to ``image``; ``exclude`` leaves one catalog index out (the query itself)."""
        start = time.perf_counter()
        query = get_query_img_embedding(self.encoder, self.transform, image, self.device)  # (1, D)
        extra = 1 if exclude is not None else 0
        indices, distances = knn(self.embeddings, query, k=min(k + extra, len(self.embeddings)))
        indices, distances = indices[0], distances[0]
        if exclude is not None:
            keep = indices != exclude
            indices, distances = indices[keep][:k], distances[keep][:k]
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
            result = self.search(query, k_slider.value, exclude=exclude)
            with output:
                output.clear_output(wait=True)
                images = [self.catalog[i][0] for i in result.indices]
                show_search_results(query, images, result.labels, result.distances, query_label)
                plt.show()
            status.value = html.escape(f"{source}: top {len(result.indices)} in {result.seconds * 1000:.1f} ms")

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
                current.clear()  # the results on show belong to an earlier query: they go, the error stays
                output.clear_output()
                status.value = f"<span style='color:#b00'>{html.escape(str(error))}</span>"
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
