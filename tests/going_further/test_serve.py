"""The search service: endpoints, bad input answered with a clear 4xx, image serving without path traversal.

The app is built the way ``python -m helper_utils.going_further.serve build`` builds it, from seeded random
models and a synthetic catalog in a temp folder: no training, no real data, a few seconds.
"""

import io
import json
import warnings

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_synthetic_imagefolder
from helper_utils.going_further import serve
from helper_utils.data import CLASSES_7, DATASET_FOLDER
from helper_utils.going_further.export import reference_outputs, resize_for_model
from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier, SiameseEncoder
from helper_utils.going_further.search_index import SearchIndex
from helper_utils.checkpoints import save_checkpoint
from helper_utils.widgets import load_query_image

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx`")  # starlette now prefers httpx2; the kit installs httpx
    from fastapi.testclient import TestClient


def _bytes(image, fmt="JPEG"):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Seeded checkpoints + a 7-class synthetic data root, built into a service folder."""
    tmp = tmp_path_factory.mktemp("service")
    torch.manual_seed(0)
    classifier = MobileNetLikeClassifier(7).eval()
    save_checkpoint({"state_dict": SiameseEncoder(MobileNetBackbone()).state_dict()}, tmp / "ckpt" / "encoder_best.pt")
    save_checkpoint({"state_dict": classifier.state_dict()}, tmp / "ckpt" / "classifier_best.pt")
    data_root = make_synthetic_imagefolder(tmp / "data", per_class=3)
    manifest = serve.build(tmp / "svc", tmp / "ckpt", splits=("validation",), data_root=data_root)
    return {"dir": tmp / "svc", "manifest": manifest, "classifier": classifier,
            "image_root": data_root / DATASET_FOLDER, "ckpt": tmp / "ckpt"}


@pytest.fixture(scope="module")
def client(built):
    app = serve.create_app(built["dir"], built["dir"] / serve.INDEX_DIR, image_root=built["image_root"])
    return TestClient(app, base_url="http://127.0.0.1")


def _catalog_file(built, name="validation/hat/hat_1.jpg"):
    return name, (built["image_root"] / name).read_bytes()


def test_build_writes_models_index_and_manifest(built):
    assert serve.is_built(built["dir"])
    assert built["manifest"]["splits"] == {"validation": 21} and built["manifest"]["size"] == 21
    index = SearchIndex.load(built["dir"] / serve.INDEX_DIR)
    assert "validation/dress/dress_0.jpg" in index.ids and set(index.labels) == set(CLASSES_7)
    assert json.loads((built["dir"] / "service.json").read_text())["backend"] == "exact"


def test_health_reports_models_and_catalog(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["catalog"] == {"size": 21, "dim": 64, "backend": "exact", "classes": CLASSES_7}
    assert body["models"]["classifier"]["classes"] == CLASSES_7
    assert body["models"]["encoder"]["source"].startswith("encoder_best.pt sha256:")
    assert body["limits"] == {"max_upload_bytes": serve.MAX_UPLOAD_BYTES, "max_k": serve.MAX_K}


def test_predict_matches_the_pytorch_classifier(client, built):
    _, data = _catalog_file(built)
    body = client.post("/predict", files={"file": ("hat.jpg", data, "image/jpeg")}).json()
    assert list(body["probabilities"]) == CLASSES_7
    expected = reference_outputs(built["classifier"], resize_for_model(load_query_image(data))[None])["probabilities"][0]
    np.testing.assert_allclose(list(body["probabilities"].values()), expected, atol=1e-4)
    assert body["label"] == CLASSES_7[int(np.argmax(expected))]


def test_search_finds_the_catalog_photo_itself_first(client, built):
    name, data = _catalog_file(built)
    response = client.post("/search", params={"k": 4}, files={"file": ("q.jpg", data, "image/jpeg")})
    results = response.json()["results"]
    assert response.json()["k"] == 4 and len(results) == 4
    assert results[0]["id"] == name and results[0]["label"] == "hat" and results[0]["distance"] < 1e-3
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances)
    image = client.get(results[0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg" and image.content == data


def test_search_defaults_to_five_and_caps_k_at_the_catalog_size(client, built):
    files = {"file": ("q.jpg", _catalog_file(built)[1], "image/jpeg")}
    assert len(client.post("/search", files=files).json()["results"]) == 5
    assert len(client.post("/search", params={"k": 50}, files=files).json()["results"]) == 21


@pytest.mark.parametrize("k", ["0", "51", "-1", "five"])
def test_k_out_of_bounds_is_a_422_naming_k(client, built, k):
    response = client.post("/search", params={"k": k}, files={"file": ("q.jpg", _catalog_file(built)[1], "image/jpeg")})
    assert response.status_code == 422 and response.json()["detail"].startswith("k: ")


@pytest.mark.parametrize("mode,fmt,content_type", [("L", "JPEG", "image/jpeg"), ("L", "PNG", "image/png"),
                                                   ("RGBA", "PNG", "image/png"), ("P", "PNG", "image/png"),
                                                   ("RGB", "PNG", None), ("RGB", "JPEG", "application/octet-stream")])
@pytest.mark.parametrize("endpoint", ["/predict", "/search"])
def test_grayscale_rgba_and_png_queries_work(client, mode, fmt, content_type, endpoint):
    image = Image.effect_noise((50, 40), 60).convert(mode)
    upload = ("q", _bytes(image, fmt)) if content_type is None else ("q", _bytes(image, fmt), content_type)
    response = client.post(endpoint, files={"file": upload})
    assert response.status_code == 200, response.json()


def _truncated_jpeg():
    data = _bytes(Image.effect_noise((200, 200), 50).convert("RGB"))
    return data[: len(data) // 3]


@pytest.mark.parametrize("files,status,message", [
    ({"file": ("notes.txt", b"hello", "text/plain")}, 415, "declared as 'text/plain'"),
    ({"file": ("empty.jpg", b"", "image/jpeg")}, 400, "empty"),
    ({"file": ("fake.jpg", b"%PDF-1.4 not an image", "image/jpeg")}, 400, "not a readable image"),
    ({"file": ("cut.jpg", _truncated_jpeg(), "image/jpeg")}, 400, "not a readable image"),
    ({"photo": ("q.jpg", b"\xff\xd8", "image/jpeg")}, 422, "field 'file' is missing"),
], ids=["text-file", "empty", "not-an-image", "truncated-jpeg", "missing-field"])
@pytest.mark.parametrize("endpoint", ["/predict", "/search"])
def test_bad_uploads_get_a_clear_4xx_and_the_service_keeps_running(client, files, status, message, endpoint):
    response = client.post(endpoint, files=files)
    assert response.status_code == status and message in response.json()["detail"]
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("content,content_type", [(b"\xff\xd8\xff", "image/jpeg"), (b'{"file": 1}', "application/json"),
                                                  (b"file=x", "application/x-www-form-urlencoded")])
def test_a_body_that_is_not_multipart_is_a_415(client, content, content_type):
    response = client.post("/search", content=content, headers={"content-type": content_type})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]


def test_oversized_upload_is_a_413_before_parsing(client):
    big = b"\xff\xd8" + bytes(serve.MAX_UPLOAD_BYTES + 100 * 1024)
    response = client.post("/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413 and "10 MB" in response.json()["detail"]
    assert client.get("/health").status_code == 200


def test_oversized_upload_without_a_declared_length_is_cut_off(built):
    """A chunked body (no Content-Length) is counted while it arrives."""
    app = serve.create_app(built["dir"], built["dir"] / serve.INDEX_DIR, image_root=built["image_root"],
                           max_upload_bytes=100_000)
    request = httpx.Request("POST", "http://t/predict", files={"file": ("big.jpg", bytes(300_000), "image/jpeg")})
    body = request.read()

    def chunks():
        for i in range(0, len(body), 16_384):
            yield body[i:i + 16_384]

    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.post("/predict", content=chunks(), headers={"content-type": request.headers["content-type"]})
        assert response.status_code == 413 and "passed the" in response.json()["detail"]
        small = client.post("/predict", files={"file": ("ok.png", _bytes(Image.new("RGB", (9, 9)), "PNG"), "image/png")})
        assert small.status_code == 200


def test_upload_between_the_body_slack_and_the_limit_is_a_413(built):
    """The file alone is over the limit although the whole body passed the guard's slack."""
    app = serve.create_app(built["dir"], built["dir"] / serve.INDEX_DIR, image_root=built["image_root"],
                           max_upload_bytes=100_000)
    response = TestClient(app, base_url="http://127.0.0.1").post("/search", files={"file": ("a.jpg", bytes(100_500), "image/jpeg")})
    assert response.status_code == 413 and "limit" in response.json()["detail"]


@pytest.mark.parametrize("path", [
    "/images/..%2F..%2F..%2Fetc%2Fpasswd",
    "/images/%2Fetc%2Fpasswd",
    "/images/validation/hat/%2E%2E/%2E%2E/%2E%2E/test/hat/hat_1.jpg",
    "/images/test/hat/hat_1.jpg",  # a real file under the image root, but not in the catalog
    "/images/validation/hat/nothing.jpg",
])
def test_images_serves_catalog_ids_only(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "no catalog image" in response.json()["detail"]


def test_missing_artifacts_name_the_build_command(tmp_path, built):
    with pytest.raises(FileNotFoundError, match="serve build --out"):
        serve.create_app(tmp_path, built["dir"] / serve.INDEX_DIR)
    with pytest.raises(FileNotFoundError, match="(?s)no saved SearchIndex.*python -m helper_utils.going_further.serve build"):
        serve.create_app(built["dir"], tmp_path / "catalog")


def test_index_of_another_dimension_is_refused(tmp_path, built):
    SearchIndex().add(np.random.default_rng(0).normal(size=(5, 8))).save(tmp_path / "catalog")
    with pytest.raises(ValueError, match="8-d vectors but the encoder makes 64-d"):
        serve.create_app(built["dir"], tmp_path / "catalog")


def test_background_server_answers_on_loopback_and_stops(built):
    app = serve.create_app(built["dir"], built["dir"] / serve.INDEX_DIR, image_root=built["image_root"])
    with serve.BackgroundServer(app) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/health", timeout=10).json()["catalog"]["size"] == 21
        response = httpx.post(f"{server.url}/predict", files={"file": ("x.txt", b"hi", "text/plain")}, timeout=10)
        assert response.status_code == 415
    assert not server.thread.is_alive()


def test_cli_build_without_checkpoints_fails_with_a_message(tmp_path, capsys):
    assert serve.main(["build", "--out", str(tmp_path / "svc"), "--checkpoints", str(tmp_path)]) == 1
    assert "no encoder checkpoint" in capsys.readouterr().err
    assert not serve.is_built(tmp_path / "svc")
