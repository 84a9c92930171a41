"""Hostile and odd inputs to the going-further stack: service requests and saved artifacts.

Each table row is one input; the archive and image tables are in ``tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import build_synthetic_service
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
    return build_synthetic_service(tmp_path_factory.mktemp("service"), per_class=2)


def _app(built, **kwargs):
    return serve.create_app(built["dir"], built["dir"] / serve.INDEX_DIR, image_root=built["image_root"], **kwargs)


@pytest.fixture(scope="module")
def client(built):
    return TestClient(_app(built), base_url="http://127.0.0.1:8000")


# --------------------------------------------------------------------------- requests

def _png_bomb() -> bytes:
    from test_bad_inputs import _with_declared_size

    return _with_declared_size(_encoded(Image.new("L", (8, 8)), "PNG"), 7700, 7700)


def _scan_bomb() -> bytes:
    from test_bad_inputs import _scan_bomb

    return _scan_bomb()


def _progressive_declaring(width: int, height: int) -> bytes:
    from test_bad_inputs import _jpeg_declaring

    return _jpeg_declaring(width, height, progressive=True, subsampling=0)


_PHOTO = ("p.jpg", _encoded(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG"), "image/jpeg")


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
    "scan-bomb-upload": ("POST", "/search", {"files": {"file": ("b.jpg", _scan_bomb(), "image/jpeg")}}, 400,
                         "scans"),
    "progressive-jpeg-over-the-memory-limit": ("POST", "/predict", {"files": {"file": (
        "p.jpg", _progressive_declaring(6000, 6000), "image/jpeg")}}, 400, "progressive JPEG of 6000x6000"),
    "cross-origin-upload": ("POST", "/predict", {"files": {"file": _PHOTO},
                                                 "headers": {"origin": "https://attacker.example"}}, 403, "another site"),
    "null-origin-upload": ("POST", "/search", {"files": {"file": _PHOTO}, "headers": {"origin": "null"}}, 403,
                           "another site"),
    "upload-from-another-local-port": ("POST", "/predict", {"files": {"file": _PHOTO},
                                                            "headers": {"origin": "http://127.0.0.1:8888"}}, 403,
                                       "another site"),
    "cross-site-fetch-metadata": ("POST", "/predict", {"files": {"file": _PHOTO},
                                                       "headers": {"sec-fetch-site": "cross-site"}}, 403, "another site"),
    "host-with-another-port": ("GET", "/health", {"headers": {"host": "127.0.0.1:8001"}}, 400, "Host header"),
    "host-localhost-colon-evil": ("GET", "/health", {"headers": {"host": "localhost:evil.com"}}, 400, "Host header"),
    "host-without-a-port": ("GET", "/health", {"headers": {"host": "127.0.0.1"}}, 400, "Host header"),
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


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000"])
def test_loopback_hosts_are_served(client, host):
    assert client.get("/health", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
                                     {"sec-fetch-site": "none"}])
def test_uploads_from_the_service_itself_or_from_curl_are_served(client, headers):
    photo = _encoded(Image.new("RGB", (32, 32), (1, 2, 3)), "PNG")
    assert client.post("/predict", files={"file": ("p.png", photo, "image/png")}, headers=headers).status_code == 200


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


def test_decoding_is_bounded_by_the_decode_slots(built):
    """With 12 uploads at once, at most ``decode_slots`` decode at the same time, in that many worker processes."""
    from concurrent.futures import ThreadPoolExecutor

    app = _app(built, decode_slots=2)
    client = TestClient(app, base_url="http://127.0.0.1")
    photo = _encoded(Image.effect_noise((600, 400), 50).convert("RGB"), "PNG")
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: client.post("/predict", files={"file": ("p.png", photo, "image/png")})
                                 .status_code, range(12)))
    assert statuses == [200] * 12 and app.state.decoder.peak_busy == 2 and len(app.state.decoder.pids()) == 2
    app.state.decoder.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists (the pool reaps what it kills)
    except ProcessLookupError:
        return False
    return True


def test_a_decode_over_the_time_limit_is_stopped_and_its_worker_replaced(built):
    """The limit really stops the work: the worker is killed (no CPU burnt after the answer) and replaced."""
    app = _app(built, decode_slots=1, decode_time_limit_s=30)
    client = TestClient(app, base_url="http://127.0.0.1")
    pool = app.state.decoder
    pool.start().decode(_PHOTO[1])  # started and warm: the limit counts the decode only, never the start
    pool.time_limit_s = 0.05
    (first,) = pool.pids()
    slow = _encoded(Image.new("RGBA", (3400, 3400), (90, 20, 200, 128)), "PNG")  # 11.6 Mpx: far over 50 ms
    response = client.post("/predict", files={"file": ("slow.png", slow, "image/png")})
    assert response.status_code == 400 and "took longer than" in response.json()["detail"]
    assert pool.replaced == 1 and not _alive(first) and pool.pids() != [first]
    pool.time_limit_s = 30  # the replacement serves the next upload
    assert client.post("/predict", files={"file": _PHOTO}).status_code == 200
    pool.close()
    assert pool.pids() == []


@pytest.mark.slow
def test_the_memory_of_a_decode_slot_stays_within_the_stated_figure():
    """The worst images the pixel limits let through, each decoded in a fresh worker (tools.decode_memory)."""
    from helper_utils.going_further.decoding import SLOT_MEMORY_MIB, DecodeWorker
    from test_bad_inputs import _jpeg_declaring
    from tools.decode_memory import CASES, measure

    worst = [name for name in CASES if name.startswith(("progressive JPEG 4:2:0", "palette PNG", "RGBA WebP"))]
    report = measure(worst, log=lambda line: None)
    assert all(row["outcome"] == "decoded" for row in report["rows"]), report["rows"]
    assert report["most_added_mib"] <= SLOT_MEMORY_MIB, report["rows"]
    worker = DecodeWorker()  # the 1 KB JPEG whose header claims 65500x600: decoded at 1/8 scale now
    try:
        rest = worker.decode(_PHOTO[1]).peak_rss_kib
        assert (worker.decode(_jpeg_declaring(65500, 600)).peak_rss_kib - rest) / 1024 < 32
    finally:
        worker.kill()


# --------------------------------------------------------------------------- connections, against the real server

CLIENT = """
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
        held.append(s)
    except OSError:
        pass
print(len(held), flush=True)
sys.stdin.read()  # hold them, saying nothing, until the test closes stdin
"""


@pytest.fixture(scope="module")
def live(built, tmp_path_factory):
    """`serve run` in its own process, with the default descriptor limit (1,024) and a 2 s header deadline."""
    import resource
    import subprocess
    import sys
    import time

    import httpx

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
    port = serve.free_port()
    log = tmp_path_factory.mktemp("live") / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "helper_utils.going_further.serve", "run", "--dir", str(built["dir"]), "--image-root",
             str(built["image_root"]), "--port", str(port), "--header-timeout", "2", "--no-access-log"],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "the server did not start"
        try:
            httpx.get(f"{url}/health", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield {"url": url, "port": port, "log": log}
    process.terminate()
    process.wait(timeout=30)


def _health_seconds(url: str) -> float:
    import time

    import httpx

    start = time.monotonic()
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    return time.monotonic() - start


def test_1100_idle_connections_leave_health_answering_within_a_second(live):
    import subprocess
    import sys

    clients = [subprocess.Popen([sys.executable, "-c", CLIENT, str(live["port"]), "550"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        connected = sum(int(client.stdout.readline() or 0) for client in clients)
        assert connected >= 1000  # the kernel completed them; the server closes the idle ones it cannot keep
        seconds = [_health_seconds(live["url"]) for _ in range(3)]
        assert max(seconds) < 1.0, seconds
    finally:
        for client in clients:
            client.stdin.close()
            client.wait(timeout=30)
    log = live["log"].read_text()
    assert "Traceback" not in log and len(log.splitlines()) < 50, log[-2000:]


def test_request_headers_that_never_end_are_cut_off(live):
    import socket
    import time

    with socket.create_connection(("127.0.0.1", live["port"])) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{live['port']}\r\nX-Slow: ".encode())
        sock.settimeout(10)
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, without an answer
        assert 1.0 < time.monotonic() - start < 8.0  # the 2 s deadline, not the client's patience


def _raw_status(port: int, request: bytes) -> int | None:
    """Send ``request`` as it is; the status code of the answer, or None when the server just closed."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # refused before the whole request was read
            pass
        try:
            head = sock.recv(200)
        except ConnectionResetError:
            return None
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None


def _raw(port: int, lines: list[str], body: bytes = b"") -> bytes:
    return ("\r\n".join([lines[0], f"Host: 127.0.0.1:{port}", *lines[1:]]) + "\r\n\r\n").encode() + body


SMUGGLING = {  # requests whose framing is ambiguous or oversized: each is refused, the server stays up
    "duplicate-content-length": (["POST /predict HTTP/1.1", "Content-Type: multipart/form-data; boundary=x",
                                  "Content-Length: 4", "Content-Length: 4"], b"abcd"),
    "conflicting-content-length": (["POST /predict HTTP/1.1", "Content-Type: multipart/form-data; boundary=x",
                                    "Content-Length: 4", "Content-Length: 40"], b"abcd"),
    "content-length-and-chunked": (["POST /predict HTTP/1.1", "Content-Type: multipart/form-data; boundary=x",
                                    "Content-Length: 4", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    "chunk-size-not-a-number": (["POST /predict HTTP/1.1", "Content-Type: multipart/form-data; boundary=x",
                                 "Transfer-Encoding: chunked"], b"zz\r\nabcd\r\n0\r\n\r\n"),
    "gzip-transfer-encoding": (["POST /predict HTTP/1.1", "Content-Type: multipart/form-data; boundary=x",
                                "Transfer-Encoding: gzip"], b"abcd"),
    "one-megabyte-url": (["GET /health?" + "a" * 1_000_000 + " HTTP/1.1"], b""),
    "one-megabyte-header": (["GET /health HTTP/1.1", "X-Big: " + "a" * 1_000_000], b""),
}


@pytest.mark.parametrize("case", SMUGGLING)
def test_ambiguous_or_oversized_framing_is_refused(live, case):
    lines, body = SMUGGLING[case]
    status = _raw_status(live["port"], _raw(live["port"], lines, body))
    assert status is None or 400 <= status < 500 or status == 501, status
    assert _health_seconds(live["url"]) < 5


def test_3000_keep_alive_requests_on_one_connection(live):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", live["port"], timeout=10)
    statuses = []
    for _ in range(3000):
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        socket_in_use = connection.sock
    connection.close()
    assert statuses == [200] * 3000 and socket_in_use is not None


def test_60_concurrent_uploads_of_almost_10_mb(live):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    junk = b"\xff\xd8\xff\xe0" + bytes(10 * 1024 * 1024 - 10_000)  # a JPEG's first bytes, then nothing usable

    def upload(_):
        return httpx.post(f"{live['url']}/predict", files={"file": ("big.jpg", junk, "image/jpeg")}, timeout=120).status_code

    with ThreadPoolExecutor(60) as pool:
        statuses = list(pool.map(upload, range(60)))
    assert statuses == [400] * 60
    assert _health_seconds(live["url"]) < 5


def test_a_scan_bomb_costs_the_live_server_nothing(live):
    import time

    import httpx

    start = time.monotonic()
    response = httpx.post(f"{live['url']}/search", files={"file": ("bomb.jpg", _scan_bomb(), "image/jpeg")}, timeout=30)
    assert response.status_code == 400 and "scans" in response.json()["detail"]
    assert time.monotonic() - start < 5  # counted in the file, never decoded
    assert httpx.post(f"{live['url']}/search", files={"file": _PHOTO}, timeout=30).status_code == 200


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
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
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


@pytest.mark.parametrize("where", ["under-a-file", "a-file"])
def test_serve_build_into_an_unwritable_place_is_one_line(built, tmp_path, capsys, where):
    (tmp_path / "notes.txt").write_text("not a folder")
    out = tmp_path / "notes.txt" / "svc" if where == "under-a-file" else tmp_path / "notes.txt"
    err = _cli_error(capsys, ["build", "--out", str(out), "--checkpoints", str(built["ckpt"]), "--splits",
                              "validation", "--data-root", str(built["image_root"].parent)])
    assert "notes.txt" in err and ("Not a directory" in err or "File exists" in err)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_serve_run_with_a_corrupt_onnx_file_is_one_line(built, tmp_path, capsys, damage):
    import shutil

    folder = tmp_path / "svc"
    shutil.copytree(built["dir"], folder)
    model = folder / "encoder.onnx"
    model.write_bytes({"garbage": b"not a model at all", "truncated": model.read_bytes()[:2000], "empty": b""}[damage])
    err = _cli_error(capsys, ["run", "--dir", str(folder), "--port", "8123"])
    assert "encoder.onnx is not a loadable ONNX model" in err and "serve build" in err
