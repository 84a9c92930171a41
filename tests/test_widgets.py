"""The search UI's logic: bad uploads get clear messages, odd image modes are converted, and the search runs
the functions it is given (notebook 06 passes the learner's), with one clear line when they misbehave."""

import io
import sys
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image

from helper_utils.reference import MobileNetBackbone, SiameseEncoder, find_closest, get_query_img_embedding
from helper_utils.reference import val_transform
from helper_utils.widgets import (MAX_SIDE, QueryImageError, SearchFunctionError, SearchResult, VisualSearch,
                                  load_query_image)


def _bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("L", "PNG"), ("RGBA", "PNG"),
                                      ("P", "PNG"), ("I;16", "PNG"), ("CMYK", "JPEG")])
def test_any_image_mode_becomes_rgb(mode, fmt):
    image = load_query_image(_bytes(Image.new(mode, (40, 30)), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_transparent_pixels_become_white():
    image = load_query_image(_bytes(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"))
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_huge_image_is_shrunk():
    image = load_query_image(_bytes(Image.new("RGB", (4000, 3000)), "PNG"))
    assert max(image.size) == MAX_SIDE


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"%PDF-1.4 not an image", "not a readable image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not a readable image"),  # a JPEG header and nothing else
])
def test_bad_uploads_get_a_clear_message(data, message):
    with pytest.raises(QueryImageError, match=message):
        load_query_image(data, "photo.jpg")


def test_truncated_jpeg_is_refused():
    data = _bytes(Image.effect_noise((200, 200), 50).convert("RGB"), "JPEG")
    with pytest.raises(QueryImageError, match="not a readable image"):
        load_query_image(data[: len(data) // 3])


class _Catalog:
    classes = ["dark", "light"]

    def __init__(self):
        self.images = [Image.new("RGB", (64, 64), (v, v, v)) for v in (0, 10, 20, 230, 240, 250)]
        self.targets = [0, 0, 0, 1, 1, 1]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def test_search_finds_same_class_and_excludes_the_query():
    torch.manual_seed(0)
    encoder = SiameseEncoder(MobileNetBackbone()).eval()
    catalog = _Catalog()
    embeddings = np.concatenate([encoder(val_transform(im).unsqueeze(0)).detach().numpy() for im in catalog.images])
    search = VisualSearch(encoder, catalog, embeddings, val_transform)
    result = search.search(catalog.images[0], k=2, exclude=0)
    assert isinstance(result, SearchResult) and 0 not in result.indices and len(result.indices) == 2
    assert np.all(np.diff(result.distances) >= 0)
    assert result.labels == ["dark", "dark"]
    upload = search.search_upload(_bytes(Image.new("L", (100, 80), 245), "PNG"), k=3)
    assert upload.labels[0] == "light"


def _search_setup():
    """A seeded encoder, the six-photo catalog and its embeddings, as notebook 06 builds them."""
    torch.manual_seed(0)
    encoder = SiameseEncoder(MobileNetBackbone()).eval()
    catalog = _Catalog()
    embeddings = np.concatenate([get_query_img_embedding(encoder, val_transform, im, "cpu") for im in catalog.images])
    return encoder, catalog, embeddings


def test_search_runs_the_learners_functions_and_matches_the_kit():
    """Notebook 06 passes the learner's answers: they run, and a right answer gives the kit's results exactly."""
    encoder, catalog, embeddings = _search_setup()
    calls = []

    def learner_embedding(*args):
        calls.append(("get_query_img_embedding", args))
        return get_query_img_embedding(*args)

    def learner_find_closest(*args):
        calls.append(("find_closest", args))
        return find_closest(*args)  # indices only: the distances shown are the search's own

    kit = VisualSearch(encoder, catalog, embeddings, val_transform)
    learner = VisualSearch(encoder, catalog, embeddings, val_transform, "cpu",
                           get_query_img_embedding=learner_embedding, find_closest=learner_find_closest)
    for exclude in (None, 0):
        expected = kit.search(catalog.images[0], k=3, exclude=exclude)
        calls.clear()
        got = learner.search(catalog.images[0], k=3, exclude=exclude)
        assert [name for name, _ in calls] == ["get_query_img_embedding", "find_closest"]
        assert calls[0][1] == (encoder, val_transform, catalog.images[0], "cpu")
        searched, query, k = calls[1][1]
        np.testing.assert_array_equal(searched, embeddings)
        assert query.shape == (1, 64) and k == (3 if exclude is None else 4)  # one more to leave the query out
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_allclose(got.distances, expected.distances, rtol=1e-12)
        np.testing.assert_allclose(got.distances, np.linalg.norm(embeddings[got.indices] - query, axis=1), rtol=1e-6)
        assert got.labels == expected.labels


def test_the_learners_ranking_is_what_shows():
    """A find_closest that ranks its own way (farthest first) drives the results: no kit search behind it."""
    encoder, catalog, embeddings = _search_setup()

    def farthest_first(embeddings, query, k=5):
        return np.argsort(-np.linalg.norm(embeddings - query, axis=1), kind="stable")[:k]

    search = VisualSearch(encoder, catalog, embeddings, val_transform, find_closest=farthest_first)
    result = search.search(catalog.images[0], k=2)
    assert result.labels == ["light", "light"]
    assert result.distances[0] >= result.distances[1]


def test_a_find_closest_that_changes_its_input_cannot_spoil_the_catalog():
    encoder, catalog, embeddings = _search_setup()
    kept = embeddings.copy()

    def in_place(embeddings, query, k=5):
        embeddings -= query  # the grader fails this; the UI must still search the real catalog
        return np.argsort(np.linalg.norm(embeddings, axis=1), kind="stable")[:k]

    search = VisualSearch(encoder, catalog, embeddings, val_transform, find_closest=in_place)
    first = search.search(catalog.images[0], k=3)
    again = search.search(catalog.images[0], k=3)
    np.testing.assert_array_equal(embeddings, kept)
    np.testing.assert_array_equal(first.indices, again.indices)
    assert first.labels == ["dark"] * 3


def _raises(*args):
    raise ZeroDivisionError("division by zero\n  second line of the message")


def _exits(*args):
    sys.exit(3)


@pytest.mark.parametrize("role,fn,message", [
    ("get_query_img_embedding", _raises, "`get_query_img_embedding` raised ZeroDivisionError: division by zero;"),
    ("get_query_img_embedding", lambda *a: None, "`get_query_img_embedding` returned None, not a (1, 64) array"),
    ("get_query_img_embedding", lambda *a: np.zeros((2, 64)), "float64 values of shape (2, 64), not a (1, 64)"),
    ("get_query_img_embedding", lambda *a: np.zeros((1, 7)), "shape (1, 7), not a (1, 64) array"),
    ("get_query_img_embedding", lambda *a: np.full((1, 64), np.nan), "returned NaN or infinite values"),
    ("get_query_img_embedding", lambda *a: "embedding", "returned a str, not a (1, 64) array"),
    ("find_closest", _raises, "`find_closest` raised ZeroDivisionError: division by zero;"),
    ("find_closest", _exits, "`find_closest` raised SystemExit: 3;"),
    ("find_closest", lambda e, q, k: None, "`find_closest` returned None, not 3 catalog indices"),
    ("find_closest", lambda e, q, k: np.array([0.0, 1.0, 2.0]), "returned float64 values, not 3 catalog indices"),
    ("find_closest", lambda e, q, k: np.array([True, False, True]), "returned bool values"),
    ("find_closest", lambda e, q, k: np.arange(6), "returned shape (6,) for k=3, not (3,)"),
    ("find_closest", lambda e, q, k: np.array([[0, 1, 2]]), "returned shape (1, 3) for k=3"),
    ("find_closest", lambda e, q, k: np.array([0, 1, 6]), "returned index 6, outside the catalog's 0..5"),
    ("find_closest", lambda e, q, k: np.array([0, -1, 2]), "returned index -1, outside the catalog's 0..5"),
    ("find_closest", lambda e, q, k: [0, [1, 2], 3], "returned a list that is not 3 catalog indices"),
])
def test_a_misbehaving_function_gives_one_clear_line(role, fn, message):
    encoder, catalog, embeddings = _search_setup()
    search = VisualSearch(encoder, catalog, embeddings, val_transform, **{role: fn})
    with pytest.raises(SearchFunctionError) as raised:
        search.search(catalog.images[0], k=3)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value) and str(raised.value).endswith("then create the VisualSearch again")


def test_search_accepts_tensors_and_a_flat_query():
    """What the grader would also pass: a (D,) query, a tensor of indices."""
    encoder, catalog, embeddings = _search_setup()
    search = VisualSearch(encoder, catalog, embeddings, val_transform,
                          get_query_img_embedding=lambda *a: get_query_img_embedding(*a)[0],
                          find_closest=lambda e, q, k: torch.from_numpy(find_closest(e, q, k)))
    assert search.search(catalog.images[0], k=2).labels == ["dark", "dark"]


def test_functions_must_be_callable():
    encoder, catalog, embeddings = _search_setup()
    with pytest.raises(TypeError, match="find_closest should be a function, got ndarray"):
        VisualSearch(encoder, catalog, embeddings, val_transform, find_closest=np.arange(3))


def test_widget_shows_a_failing_function_as_one_red_line(monkeypatch):
    pytest.importorskip("ipywidgets")
    import helper_utils.plotting

    shown = []
    monkeypatch.setattr(helper_utils.plotting, "show_search_results", lambda *args, **kwargs: shown.append(args))
    encoder, catalog, embeddings = _search_setup()
    calls = []

    def broken(embeddings, query, k=5):
        calls.append(k)
        return None

    ui = VisualSearch(encoder, catalog, embeddings, val_transform, find_closest=broken).widget(k=2)
    controls, status, output = ui.children
    picker, upload, k_slider = controls.children
    assert calls == [3], "the widget's first search should call the given find_closest (k + 1: the query is left out)"
    assert status.value.startswith("<span style='color:#b00'>Search failed: `find_closest` returned None")
    assert not shown, "no results under the message"
    k_slider.value = 1  # nothing to search again: the message stays
    assert calls == [3] and "Search failed" in status.value
    picker.value = 3  # a new query calls it again, and fails the same clear way
    assert calls == [3, 2] and "Search failed" in status.value


def test_widget_builds_and_reports_bad_upload():
    pytest.importorskip("ipywidgets")
    encoder = SiameseEncoder(MobileNetBackbone()).eval()
    catalog = _Catalog()
    embeddings = np.random.default_rng(0).normal(size=(6, 64)).astype(np.float32)
    ui = VisualSearch(encoder, catalog, embeddings, val_transform).widget(k=2)
    controls, status, output = ui.children
    assert "ms" in status.value
    cleared = []
    output.clear_output = lambda *args, **kwargs: cleared.append(True)  # the frontend empties the widget
    picker, upload, k_slider = controls.children
    upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                     "last_modified": datetime(2026, 1, 1)},)
    assert "not a readable image" in status.value
    assert cleared, "the previous query's results stay under the refusal"
    assert picker.value is None, "the picker still shows a catalog photo whose results are gone"
    k_slider.value = 1  # nothing to search again: the refusal stays on show
    assert "not a readable image" in status.value
    picker.value = 3  # a new query searches and shows again
    assert status.value.startswith("catalog #3: top 1 in ")


def test_uploads_read_alike_from_ipywidgets_7_and_8():
    """Colab keeps its ipywidgets 7.7 (pyproject.toml allows it); JupyterLab installs 8: FileUpload.value differs."""
    from helper_utils.widgets import _uploaded_files

    version_8 = ({"name": "shirt.png", "type": "image/png", "size": 3, "content": memoryview(b"png"),
                  "last_modified": datetime(2026, 1, 1)},)
    version_7 = {"shirt.png": {"metadata": {"name": "shirt.png", "type": "image/png", "size": 3}, "content": b"png"}}
    assert _uploaded_files(version_8) == _uploaded_files(version_7) == [("shirt.png", b"png")]
