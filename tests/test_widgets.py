"""The search UI's logic: bad uploads get clear messages, odd image modes are converted."""

import io
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image

from helper_utils.reference import MobileNetBackbone, SiameseEncoder
from helper_utils.reference import val_transform
from helper_utils.widgets import MAX_SIDE, QueryImageError, VisualSearch, load_query_image


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
    assert 0 not in result.indices and len(result.indices) == 2
    assert np.all(np.diff(result.distances) >= 0)
    assert result.labels == ["dark", "dark"]
    upload = search.search_upload(_bytes(Image.new("L", (100, 80), 245), "PNG"), k=3)
    assert upload.labels[0] == "light"


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
