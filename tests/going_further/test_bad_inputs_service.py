"""Hostile and odd inputs to the going-further stack: service requests and saved artifacts.

Each table row is one input; the archive and image tables are in ``tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_synthetic_imagefolder
from helper_utils.data import DATASET_FOLDER
from helper_utils.going_further import serve
from helper_utils.going_further.search_index import SearchIndex
from helper_utils.reference import MobileNetBackbone, MobileNetLikeClassifier, SiameseEncoder
from helper_utils.checkpoints import BestEpochFiles, save_checkpoint

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient


def _encoded(image, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    torch.manual_seed(0)
    save_checkpoint({"state_dict": SiameseEncoder(MobileNetBackbone()).state_dict()}, tmp / "ckpt" / "encoder_best.pt")
    save_checkpoint({"state_dict": MobileNetLikeClassifier(7).state_dict()}, tmp / "ckpt" / "classifier_best.pt")
    data_root = make_synthetic_imagefolder(tmp / "data", per_class=2)
    serve.build(tmp / "svc", tmp / "ckpt", splits=("validation",), data_root=data_root)
    return {"dir": tmp / "svc", "image_root": data_root / DATASET_FOLDER, "ckpt": tmp / "ckpt", "tmp": tmp}


def _app(built, **kwargs):
    return serve.create_app(built["dir"], built["dir"] / serve.INDEX_DIR, image_root=built["image_root"], **kwargs)


@pytest.fixture(scope="module")
def client(built):
    return TestClient(_app(built), base_url="http://127.0.0.1:8000")


# --------------------------------------------------------------------------- requests

def _png_bomb() -> bytes:
    from test_bad_inputs import _with_declared_size

    return _with_declared_size(_encoded(Image.new("L", (8, 8)), "PNG"), 7700, 7700)


REQUESTS = {
    # name: (method, path, keyword arguments of the request, status, words of the detail)
    "nul-byte-image-id": ("GET", "/images/validation/dress/dress_0.jpg%00", {}, 404, "no catalog image"),
    "nul-byte-only": ("GET", "/images/%00", {}, 404, "no catalog image"),
    "megabyte-string-as-file": ("POST", "/search", {"data": {"file": "A" * 1_000_000},
                                                    "files": {"other": ("o.txt", b"o", "text/plain")}}, 422, "not a file"),
    "not-an-image": ("POST", "/predict", {"files": {"file": ("x.jpg", b"GIF89a....", "image/jpeg")}}, 400,
                     "not accepted"),
    "tiff-upload": ("POST", "/search", {"files": {"file": ("x.tif", _encoded(Image.new("RGB", (8, 8)), "TIFF"),
                                                           "image/tiff")}}, 400, "TIFF"),
    "eps-upload": ("POST", "/search", {"files": {"file": ("x.eps", _encoded(Image.new("RGB", (8, 8)), "EPS"),
                                                          "application/octet-stream")}}, 400, "EPS"),
    "png-bomb-upload": ("POST", "/predict", {"files": {"file": ("b.png", _png_bomb(), "image/png")}}, 400, "Mpx"),
    "long-file-name": ("POST", "/predict", {"files": {"file": ("A" * 2_000 + ".jpg", b"junk", "image/jpeg")}}, 400,
                       "not a readable image"),
    "huge-file-name": ("POST", "/predict", {"files": {"file": ("A" * 20_000 + ".jpg", b"junk", "image/jpeg")}}, 400,
                       "Invalid multipart data"),  # refused by the multipart parser itself: still short
    "long-content-type": ("POST", "/predict", {"files": {"file": ("x.jpg", b"junk", "text/" + "x" * 200)}}, 415,
                          "declared (not image/*)"),
    "foreign-host": ("GET", "/health", {"headers": {"host": "attacker.example:8000"}}, 400, "Host header"),
    "foreign-host-suffix": ("GET", "/health", {"headers": {"host": "127.0.0.1.attacker.example"}}, 400, "Host header"),
    "k-as-huge-string": ("POST", "/search?k=" + "9" * 5000, {"files": {"file": ("x.jpg", b"x", "image/jpeg")}}, 422,
                         "k:"),
}


@pytest.mark.parametrize("case", REQUESTS)
def test_hostile_request_gets_a_short_json_error(client, case):
    method, path, kwargs, status, words = REQUESTS[case]
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert words in body["detail"]
    assert len(response.content) < 2_000  # never the request echoed back
    assert "AAAAAAAAAA" not in response.text and "xxxxxxxxxx" not in response.text and " at 0x" not in response.text
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000"])
def test_loopback_hosts_are_served(client, host):
    assert client.get("/health", headers={"host": host}).status_code == 200


def test_allowed_hosts_are_configurable(built):
    client = TestClient(_app(built, allowed_hosts=["search.internal"]), base_url="http://search.internal")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"host": "127.0.0.1"}).status_code == 400


def _post_with_stalled_body(app, timeout: float = 5.0):
    """Send a multipart POST whose body never comes; returns (status, body, seconds) of the answer."""
    messages = []
    scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
             "root_path": "", "scheme": "http", "http_version": "1.1", "server": ("127.0.0.1", 8000),
             "client": ("127.0.0.1", 5000), "headers": [(b"host", b"127.0.0.1:8000"),
                                                        (b"content-type", b"multipart/form-data; boundary=x"),
                                                        (b"content-length", b"1000")]}

    async def receive():
        await asyncio.sleep(3600)  # the client stalls

    async def send(message):
        messages.append(message)

    async def run():
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(app(scope, receive, send), timeout)
        return loop.time() - start

    seconds = asyncio.run(run())
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, json.loads(body), seconds


def test_a_stalled_upload_body_is_cut_off_with_a_408(built):
    status, body, seconds = _post_with_stalled_body(_app(built, body_timeout_s=0.3))
    assert status == 408 and "stalled" in body["detail"] and seconds < 2


def test_decoding_is_bounded_by_the_decode_slots(built, monkeypatch):
    """With 12 uploads at once, at most ``decode_slots`` decode at the same time."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    running, peak, lock = 0, 0, threading.Lock()
    real = serve.decode_image

    def slow_decode(*args, **kwargs):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(serve, "decode_image", slow_decode)
    client = TestClient(_app(built, decode_slots=2), base_url="http://127.0.0.1")
    photo = _encoded(Image.new("RGB", (32, 32), (1, 2, 3)), "PNG")
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: client.post("/predict", files={"file": ("p.png", photo, "image/png")})
                                 .status_code, range(12)))
    assert statuses == [200] * 12 and peak == 2


# --------------------------------------------------------------------------- artifacts: the saved search index


@pytest.fixture
def saved_index(tmp_path):
    rng = np.random.default_rng(0)
    index = SearchIndex("exact").add(rng.normal(size=(6, 4)), labels=["a", "b", "a", "b", "a", "b"],
                                     ids=[f"p{i}" for i in range(6)])
    return index.save(tmp_path / "catalog")


def _tamper(path, **changes):
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def _outside_file(path):
    np.save(path.parent / "outside.npy", np.ones((6, 4), np.float32))
    return {"data_file": "../outside.npy"}


META_TAMPERING = {
    "data-file-outside": (_outside_file, "data_file should be 'embeddings.npy'"),
    "data-file-absolute": (lambda p: {"data_file": "/etc/hostname"}, "data_file should be"),
    "data-file-other-name": (lambda p: {"data_file": "meta.json"}, "data_file should be"),
    "normalize-as-string": (lambda p: {"normalize": "no"}, "normalize should be true or false"),
    "ids-as-integers": (lambda p: {"ids": list(range(6))}, "ids should be a list of 6 strings"),
    "duplicate-ids": (lambda p: {"ids": ["p0"] * 6}, "ids should be unique"),
    "dict-labels": (lambda p: {"labels": [{"x": 1}] * 6}, "labels should be"),
    "too-few-labels": (lambda p: {"labels": ["a"]}, "labels should be a list of 6"),
    "size-negative": (lambda p: {"size": -1}, "size should be"),
    "size-as-float": (lambda p: {"size": 6.0}, "size should be"),
    "dim-as-string": (lambda p: {"dim": "4"}, "dim should be"),
    "dim-lies": (lambda p: {"dim": 5}, "expected float32 (6, 5)"),
    "size-lies": (lambda p: {"size": 7, "ids": [f"p{i}" for i in range(7)], "labels": ["a"] * 7}, "expected float32 (7, 4)"),
    "extra-param": (lambda p: {"params": {"ef_search": 64}}, "params should be an object with exactly"),
    "sha256-not-hex": (lambda p: {"sha256": "z" * 64}, "sha256 should be 64"),
    "format-as-bool": (lambda p: {"format": True}, "has format True"),
    "meta-a-list": (lambda p: None, "lacks"),
}


@pytest.mark.parametrize("case", META_TAMPERING)
def test_tampered_index_meta_is_a_value_error(saved_index, case):
    make, message = META_TAMPERING[case]
    changes = make(saved_index)
    if changes is None:
        (saved_index / "meta.json").write_text("[1, 2, 3]")
    else:
        _tamper(saved_index, **changes)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchIndex.load(saved_index)


def test_hnsw_meta_with_a_bad_ef_search_is_a_value_error(tmp_path):
    path = SearchIndex("hnsw").add(np.random.default_rng(0).normal(size=(20, 4))).save(tmp_path / "h")
    for bad in (0, -3, "64", 1.5, True, None):
        _tamper(path, params={"M": 32, "ef_construction": 200, "ef_search": bad})
        with pytest.raises(ValueError, match="params should be valid values"):
            SearchIndex.load(path)


def test_vectors_file_lying_about_its_shape_is_a_value_error(saved_index):
    """A .npy header declaring a huge array is refused from its header, before any allocation."""
    from helper_utils.files import sha256_file

    data_file = saved_index / "embeddings.npy"
    raw = data_file.read_bytes().replace(b"(6, 4)", b"(6000000000, 4)".ljust(6)[:15])
    data_file.write_bytes(raw)
    _tamper(saved_index, sha256=sha256_file(data_file))
    with pytest.raises(ValueError, match="not the index's vectors"):
        SearchIndex.load(saved_index)


# --------------------------------------------------------------------------- artifacts: checkpoints and ONNX files


def _cli_error(capsys, argv) -> str:
    assert serve.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    return err


def _truncated_checkpoint(folder):
    folder.mkdir()
    path = save_checkpoint({"state_dict": SiameseEncoder(MobileNetBackbone()).state_dict()}, folder / "encoder_best.pt")
    path.write_bytes(path.read_bytes()[:5000])


def _not_a_checkpoint(folder):
    folder.mkdir()
    (folder / "encoder_best.pt").write_text("hello")


def _wrong_weights(folder):
    save_checkpoint({"state_dict": {"w": torch.ones(1)}}, folder / "encoder_best.pt")


def _stopped_run(folder):
    save_checkpoint({"state_dict": SiameseEncoder(MobileNetBackbone()).state_dict()}, folder / "encoder_best.pt")
    BestEpochFiles(120).add(folder / "classifier_best.pt", MobileNetLikeClassifier(7)).save(82, 0.5)  # then stopped


CHECKPOINTS = {
    "truncated": (_truncated_checkpoint, "truncated or corrupt"),
    "not-a-checkpoint": (_not_a_checkpoint, "truncated or corrupt"),
    "weights-of-another-model": (_wrong_weights, "does not fit"),
    "stopped-run": (_stopped_run, "stopped after epoch 82 of 120"),
}


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_serve_build_with_a_bad_checkpoint_is_one_line(tmp_path, capsys, case):
    make, message = CHECKPOINTS[case]
    make(tmp_path / "ckpt")
    err = _cli_error(capsys, ["build", "--out", str(tmp_path / "svc"), "--checkpoints", str(tmp_path / "ckpt")])
    assert message in err


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_serve_run_with_a_corrupt_onnx_file_is_one_line(built, tmp_path, capsys, damage):
    import shutil

    folder = tmp_path / "svc"
    shutil.copytree(built["dir"], folder)
    model = folder / "encoder.onnx"
    model.write_bytes({"garbage": b"not a model at all", "truncated": model.read_bytes()[:2000], "empty": b""}[damage])
    err = _cli_error(capsys, ["run", "--dir", str(folder), "--port", "8123"])
    assert "encoder.onnx is not a loadable ONNX model" in err and "serve build" in err
