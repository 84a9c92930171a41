"""The visual search as a web service: FastAPI over the exported ONNX models and the saved catalog index.

The service never runs a PyTorch model or reads a checkpoint: it loads what
:mod:`helper_utils.going_further.export` wrote (``encoder.onnx``, ``classifier.onnx``) and what
:class:`~helper_utils.going_further.search_index.SearchIndex` saved, and every request runs onnxruntime
and numpy only. (Only ``build`` needs the checkpoints.) The files live in one folder::

    artifacts/service/
        encoder.onnx, classifier.onnx   the exported models (input: uint8 (batch, 64, 64, 3))
        catalog/                        the SearchIndex: embeddings, class labels, ids
        service.json                    what was built from what, and when

The catalog's ids are image paths relative to the dataset folder
(``validation/dress/0a2b....jpg``); ``GET /images/{id}`` serves those files and nothing else.

Endpoints (every error is JSON ``{"detail": "<what went wrong and what to do>"}``):

=====================  ===========================================================================
``GET /health``        status, the models' metadata and checksums, catalog size and back end
``POST /predict``      multipart field ``file`` (a photo) -> ``{"label", "probabilities": {class: p}}``
``POST /search?k=5``   multipart field ``file`` -> ``{"k", "results": [{"id", "label", "distance",
                       "image_url"}]}``, nearest first; ``k`` from 1 to ``max_k`` (50)
``GET /images/{id}``   a catalog photo, by its id; 404 for anything that is not a catalog id
=====================  ===========================================================================

Bad requests get a 4xx and the service keeps running:

- 400: the upload is empty, not a JPEG/PNG/WebP image, has too many pixels or JPEG scans, is
  truncated or corrupt, or takes longer than ``decode_time_limit_s`` to decode; or the ``Host``
  header names another host or port than the service's own (DNS rebinding);
- 403: an upload sent by a web page of another origin (its ``Origin`` header, or
  ``Sec-Fetch-Site: cross-site``): any site open in the learner's browser could otherwise post
  to the service;
- 408: the body stalls (no bytes for ``body_timeout_s``) or takes longer than 6 times that;
- 413: the body is larger than ``max_upload_bytes`` (10 MB), refused before it is parsed
  when the client declares its length, and counted while it arrives when it does not;
- 415: the request is not ``multipart/form-data``, or the file part declares a type that is
  not ``image/*`` (``application/octet-stream`` and no type at all are accepted: the bytes decide);
- 422: the ``file`` field is missing, or ``k`` is not an integer from 1 to ``max_k``;
- 503: every decode slot stayed busy for 30 s.

JPEG, PNG and WebP in any mode work: grayscale, palette, 16-bit and RGBA photos are converted
to RGB (transparent areas become white, EXIF orientation applied) by
:func:`helper_utils.images.decode_image`, the decoder the dataset uses too, so a catalog photo
sent as a query gives the catalog's pixels. Uploads are decoded in ``decode_slots`` (2) worker
processes (:mod:`helper_utils.going_further.decoding`), one upload each at a time: a decode that
takes longer than its time limit is stopped by killing its worker, and the memory the service
needs stays bounded whatever the number of clients (what a slot costs: the results page). Error
bodies are short sentences: they never echo the request back. The server itself caps open
connections and the time to send request headers (:mod:`helper_utils.going_further.connections`).

From a terminal::

    python -m helper_utils.going_further.serve build            # export the models + index the catalog
    python -m helper_utils.going_further.serve --port 8000      # serve on http://127.0.0.1:8000 (builds first if needed)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import mimetypes
import os
import re
import socket
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from helper_utils.cli import ArgumentParser, int_at_least, run
from helper_utils.files import sha256_file
from helper_utils.going_further.connections import (HEADER_TIMEOUT_S, MAX_CONNECTIONS, GuardedServer,
                                                    server_config)
from helper_utils.going_further.decoding import DECODE_TIME_LIMIT_S, DecodePool, DecoderBusy
from helper_utils.going_further.export import (CLASSIFIER_FILE, ENCODER_FILE, INPUT_NAME, export_models, onnx_session,
                                               read_metadata)
from helper_utils.going_further.search_index import SearchIndex
from helper_utils.images import MAX_UPLOAD_BYTES, QueryImageError
from helper_utils.paths import artifacts_dir

__all__ = ["MAX_UPLOAD_BYTES", "MAX_K", "DEFAULT_DIR", "INDEX_DIR", "create_app", "build",
           "BackgroundServer", "free_port", "main"]

MAX_K = 50  # results per search: a page of a shop, not the whole catalog
DEFAULT_DIR = artifacts_dir() / "service"
INDEX_DIR, MANIFEST = "catalog", "service.json"
UPLOAD_PATHS = ("/predict", "/search")
_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file, on top of its bytes
_EMBED_BATCH = 256  # catalog photos per onnxruntime call while building
DECODE_SLOTS = 2  # uploads decoded at once, one worker process each (what a slot costs: tools/decode_memory.py)
BODY_TIMEOUT_S = 10.0  # a body that sends nothing for this long is cut off (408); the whole body gets 6x
ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # the service listens on loopback: other names are rebinding
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # what a page of another origin may send (no uploads, nothing changes)
_MAX_DETAIL = 300  # characters of an error message: never a request's content echoed back


# --------------------------------------------------------------------------- the models

class _OnnxModels:
    """The two exported models in onnxruntime sessions, plus what their metadata says.

    Args:
        model_dir: folder with ``encoder.onnx`` and ``classifier.onnx``.
        threads: intra-op threads per session. The service's default is 1: uvicorn runs
            requests concurrently in a thread pool, and one tiny 64x64 forward pass gains
            little from more threads while several requests would fight over them.
    """

    def __init__(self, model_dir: str | Path, threads: int | None = 1) -> None:
        model_dir = Path(model_dir)
        self.files = {"encoder": model_dir / ENCODER_FILE, "classifier": model_dir / CLASSIFIER_FILE}
        self.encoder = onnx_session(self.files["encoder"], threads)
        self.classifier = onnx_session(self.files["classifier"], threads)
        self.meta = {"encoder": read_metadata(self.encoder), "classifier": read_metadata(self.classifier)}
        self.classes: list[str] = self.meta["classifier"].get("classes") or []
        self.image_size = int(self.meta["encoder"].get("image_size", 64))
        self.dim = int(self.encoder.get_outputs()[0].shape[1])
        if not self.classes:
            raise ValueError(f"{self.files['classifier']} has no class names in its metadata: export it with "
                             "helper_utils.going_further.export")
        self._info = {name: {**self.meta[name], "file": path.name, "bytes": path.stat().st_size,
                             "sha256": sha256_file(path)[:16]} for name, path in self.files.items()}

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``(B, size, size, 3)`` -> L2-normalised float32 embeddings ``(B, D)``."""
        return self.encoder.run(["embeddings"], {INPUT_NAME: pixels})[0]

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``(B, size, size, 3)`` -> class probabilities ``(B, C)``."""
        return self.classifier.run(["probabilities"], {INPUT_NAME: pixels})[0]

    def info(self) -> dict[str, Any]:
        """What ``/health`` reports about each model: metadata, size and sha256 of the file as it was loaded."""
        return self._info


# --------------------------------------------------------------------------- the app

def create_app(model_dir: str | Path, index_path: str | Path, *, image_root: str | Path | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_k: int = MAX_K, threads: int | None = 1,
               allowed_hosts: Sequence[str] = ALLOWED_HOSTS, decode_slots: int = DECODE_SLOTS,
               body_timeout_s: float = BODY_TIMEOUT_S, decode_time_limit_s: float = DECODE_TIME_LIMIT_S):
    """Build the FastAPI app over exported models and a saved index (nothing global: tests build many).

    Args:
        model_dir: folder with ``encoder.onnx`` and ``classifier.onnx`` (``helper_utils.going_further.export``).
        index_path: a saved :class:`SearchIndex` whose ids are paths relative to ``image_root``.
        image_root: the folder ``GET /images/{id}`` serves from; ``None`` means ``dataset_dir()``.
        max_upload_bytes: larger uploads get a 413.
        max_k: the largest ``k`` a search may ask for.
        threads: onnxruntime intra-op threads per model (see :class:`_OnnxModels`).
        allowed_hosts: host names the ``Host`` header may carry, with the port the service listens on;
            others get a 400, so a web page whose DNS name is rebound to 127.0.0.1 cannot talk to the
            service. Uploads must also come from that origin (``Origin`` header), else 403.
        decode_slots: uploads decoded at the same time, each in its own worker process; more
            requests wait for a slot.
        body_timeout_s: seconds a request body may stall before a 408 (the whole body: 6x).
        decode_time_limit_s: a decode that takes longer is stopped (its worker killed): 400.

    Raises:
        FileNotFoundError: a model or the index is missing (the message names the build command).
        ValueError: the index's embeddings do not have the encoder's dimension.
    """
    if image_root is None:
        from helper_utils.data import dataset_dir

        image_root = dataset_dir()
    models = _OnnxModels(model_dir, threads)
    try:
        index = SearchIndex.load(index_path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}\n  For the service, `python -m helper_utils.going_further.serve build` writes it.") from None
    if index.dim != models.dim:
        raise ValueError(f"the index at {index_path} holds {index.dim}-d vectors but the encoder makes {models.dim}-d "
                         "embeddings: rebuild both with `python -m helper_utils.going_further.serve build`")
    decoder = DecodePool(int(decode_slots), decode_time_limit_s, size=models.image_size, max_bytes=max_upload_bytes)

    @asynccontextmanager
    async def lifespan(app):  # a running server starts its decode workers at once, and stops them with it
        decoder.start()
        yield
        decoder.close()

    app = FastAPI(title="Fashion visual search", version="1.0", lifespan=lifespan,
                  description="Classify a clothing photo or find similar catalog photos (ONNX models, catalog index).")
    app.state.models, app.state.index = models, index
    app.state.image_root = Path(image_root).resolve()
    app.state.catalog_ids = set(index.ids)
    app.state.catalog_classes = sorted({str(label) for label in index.labels})
    app.state.limits = {"max_upload_bytes": int(max_upload_bytes), "max_k": int(max_k)}
    app.state.started = time.time()
    app.state.decoder = decoder  # worker processes, started on first use (or by the lifespan above)
    app.add_middleware(_UploadGuard, max_body=max_upload_bytes + _MULTIPART_SLACK, body_timeout_s=body_timeout_s)
    app.add_middleware(_HostGuard, allowed_hosts=allowed_hosts)  # added last: runs first
    _add_error_handlers(app)
    _add_routes(app, max_k)
    return app


def _add_routes(app: FastAPI, max_k: int) -> None:
    @app.get("/health")
    def health() -> dict:
        """Is the service up, which models does it run, and how big is the catalog."""
        import onnxruntime

        index = app.state.index
        return {"status": "ok", "uptime_s": round(time.time() - app.state.started, 1),
                "models": app.state.models.info(),
                "catalog": {"size": len(index), "dim": index.dim, "backend": index.backend,
                            "classes": app.state.catalog_classes},
                "limits": app.state.limits, "onnxruntime": onnxruntime.__version__}

    @app.post("/predict")
    def predict(file: UploadFile = File(..., description="a JPEG or PNG photo")) -> dict:
        """The class of the photo and the probability of every class."""
        models = app.state.models
        probabilities = models.probabilities(_read_pixels(app, file))[0]  # (C,)
        return {"label": models.classes[int(probabilities.argmax())],
                "probabilities": {name: float(p) for name, p in zip(models.classes, probabilities)}}

    @app.post("/search")
    def search(request: Request, file: UploadFile = File(..., description="a JPEG or PNG photo"),
               k: int = Query(5, ge=1, le=max_k, description=f"results to return, 1 to {max_k}")) -> dict:
        """The ``k`` catalog photos nearest to the uploaded one, nearest first."""
        models, index = app.state.models, app.state.index
        query = models.embed(_read_pixels(app, file))  # (1, D)
        distances, rows = index.search(query, k=min(k, len(index)))  # (1, k) each
        results = []
        for distance, row in zip(distances[0], rows[0]):
            if row < 0:  # an approximate back end found fewer than k
                continue
            image_id = index.ids[row]
            results.append({"id": image_id, "label": index.labels[row], "distance": float(distance),
                            "image_url": str(request.url_for("catalog_image", image_id=quote(image_id)))})
        return {"k": len(results), "results": results}

    @app.get("/images/{image_id:path}", name="catalog_image")
    def catalog_image(image_id: str) -> FileResponse:
        """A catalog photo. Only ids in the index are served, so no path can reach another file."""
        # membership first: an id that is not in the catalog (a NUL byte, "..", an absolute path) never
        # reaches the file system, where a NUL byte would raise instead of answering 404
        if image_id not in app.state.catalog_ids or "\x00" in image_id:
            raise HTTPException(404, "no catalog image with this id; ids come from /search results")
        path = (app.state.image_root / image_id).resolve()
        if not path.is_relative_to(app.state.image_root):
            raise HTTPException(404, "no catalog image with this id; ids come from /search results")
        if not path.is_file():
            raise HTTPException(404, "this catalog image is in the index but not on disk at the image root")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


def _read_pixels(app: FastAPI, file: UploadFile) -> np.ndarray:
    """The upload as the models' input ``(1, size, size, 3)`` uint8, or an HTTPException (413, 415, 400, 503).

    Decoding runs in one of ``decode_slots`` worker processes, within a hard time limit: the
    full-size pixels live only there, so memory stays bounded however many uploads arrive together.
    """
    declared = (file.content_type or "").split(";")[0].strip().lower()
    if declared and not declared.startswith("image/") and declared != "application/octet-stream":
        shown = f" as {declared!r}" if re.fullmatch(r"[a-z0-9.+-]{1,40}/[a-z0-9.+-]{1,40}", declared) else ""
        raise HTTPException(415, f"the upload is declared{shown} (not image/*); "
                                 "upload a JPEG, PNG or WebP photo (image/jpeg, image/png, image/webp)")
    limit = app.state.limits["max_upload_bytes"]
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the upload is larger than the {limit / 2**20:.0f} MB limit; send a smaller photo")
    try:
        return app.state.decoder.decode(data).pixels[None]  # (1, size, size, 3)
    except QueryImageError as error:  # refused, unreadable, or stopped at the time limit
        raise HTTPException(400, str(error)) from None  # names neither the file nor the bytes sent
    except DecoderBusy:
        raise HTTPException(503, "every decode slot is busy; try again in a few seconds",
                            headers={"Retry-After": "5"}) from None


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError) -> JSONResponse:
        """422 with one readable sentence per problem, and where it was; never the input itself."""
        problems, errors = [], []
        for error in exc.errors()[:10]:
            loc = [str(part)[:40] for part in error.get("loc", ())]
            where = ".".join(part for part in loc if part not in ("body", "query"))
            if error.get("type") == "missing" and where == "file":
                problems.append("the form field 'file' is missing: send the photo as multipart/form-data "
                                "field 'file' (curl -F file=@photo.jpg)")
            elif where == "file":
                problems.append("the form field 'file' is not a file: send the photo as multipart/form-data "
                                "field 'file' with a file name (curl -F file=@photo.jpg)")
            else:
                problems.append(f"{where or 'request'}: {_short(str(error.get('msg', 'invalid')))}")
            errors.append({"loc": loc, "type": str(error.get("type", ""))[:40]})  # no "input", no "ctx"
        return JSONResponse(status_code=422, content={"detail": _short("; ".join(problems)), "errors": errors})

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": _short(str(exc.detail))},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request, exc: Exception) -> JSONResponse:
        """A bug still answers JSON, without a traceback or a repr of the request."""
        return JSONResponse(status_code=500, content={"detail": "internal error; the service keeps running "
                                                                "(see its log)"})


def _short(text: str) -> str:
    """At most ``_MAX_DETAIL`` characters: a message, not a copy of what was sent."""
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL - 3] + "..."


class _HostGuard:
    """ASGI middleware: answer only requests addressed to this service, and uploads only from its own pages.

    * ``Host`` must name an allowed host **and the port the service listens on** (no port: 80). A
      web page can rebind its own DNS name to 127.0.0.1 and then call the service from the
      browser; its requests still carry its name in ``Host``, so they get a 400 here.
      ``localhost:evil.com`` is not a port, and gets a 400 too.
    * A request that changes something (any method but GET, HEAD and OPTIONS: the uploads) from a
      browser must come from the service's own origin: an ``Origin`` header naming another site (or
      ``null``), or ``Sec-Fetch-Site: cross-site``/``same-site``, gets a 403. Browsers send both on
      every cross-origin POST, and a plain HTML form may post ``multipart/form-data`` to any address
      without asking the server first: without this, any page open in the learner's browser could
      send the service an upload. Clients that are not browsers (curl, httpx) send neither and pass.
    """

    def __init__(self, app, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = {host.lower() for host in allowed_hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host", "").lower()
        port = (scope.get("server") or (None, None))[1]
        if "*" not in self.allowed and not _addressed_here(host, self.allowed, port):
            return await _json_error(400, "this service answers requests addressed to "
                                          f"{', '.join(sorted(self.allowed))} on its own port only (the Host header "
                                          "names another host or port)", scope, receive, send)
        if scope.get("method", "GET") not in SAFE_METHODS and not _same_origin(headers, host):
            return await _json_error(403, "uploads from web pages of another site are refused (the Origin header "
                                          "names another site); send the photo from a page of this service, "
                                          "or with curl", scope, receive, send)
        return await self.app(scope, receive, send)


def _addressed_here(host: str, allowed: set[str], port: int | None) -> bool:
    """Whether a ``Host`` value names an allowed host and the service's port.

    ``"localhost:8000"`` -> name ``localhost``, port 8000; ``"[::1]:8000"`` -> ``[::1]``, 8000;
    ``"localhost"`` -> port 80. Anything else after the name (``localhost:evil.com``, a second
    colon) is not a port, so the header is refused.
    """
    if host.startswith("["):
        name, bracket, rest = host.partition("]")
        if not bracket:
            return False
        name += "]"
    else:
        name, _, rest = host.partition(":")
        rest = ":" + rest if _ else ""
    if rest and not re.fullmatch(r":[0-9]{1,5}", rest):
        return False
    asked = int(rest[1:]) if rest else 80
    return name in allowed and (port is None or asked == port)


def _same_origin(headers: dict[str, str], host: str) -> bool:
    """Whether a browser sent this request from the service's own pages (non-browsers send no such header)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    scheme, _, rest = origin.lower().partition("://")
    return scheme in ("http", "https") and rest == host


class _UploadGuard:
    """ASGI middleware on the upload routes: 415 for a body that is not multipart, 413 for one too large.

    Both are answered before FastAPI parses (and spools to disk) the multipart body. A body
    that declares no length (chunked) is counted as it arrives and cut off at ``max_body``.
    """

    def __init__(self, app, max_body: int, body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app, self.max_body, self.body_timeout_s = app, max_body, float(body_timeout_s)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in UPLOAD_PATHS:
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return await _json_error(415, "the body is not multipart/form-data; send multipart/form-data "
                                          "with the photo in the field 'file'", scope, receive, send)
        declared = headers.get("content-length", "")
        if declared and (not declared.isdigit() or int(declared) > self.max_body):
            status = 413 if declared.isdigit() else 400
            what = "larger than the limit" if status == 413 else "of an invalid Content-Length"
            return await _json_error(status, f"the body is {what}; the limit is "
                                             f"{(self.max_body - _MULTIPART_SLACK) / 2**20:.0f} MB", scope, receive, send)
        received, started = 0, False
        deadline = asyncio.get_running_loop().time() + 6 * self.body_timeout_s
        body_done = False

        async def counted_receive():
            nonlocal received, body_done
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline then
                return await receive()
            left = min(self.body_timeout_s, deadline - asyncio.get_running_loop().time())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.0))
            except asyncio.TimeoutError:  # a stalled or trickling body must not hold a connection forever
                raise _TooLarge(408, f"the body stalled: send it within {self.body_timeout_s:.0f} s "
                                     f"of silence and {6 * self.body_timeout_s:.0f} s in all") from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(413, f"the body passed the {(self.max_body - _MULTIPART_SLACK) / 2**20:.0f} MB limit")
            return message

        async def tracked_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge as error:  # raised outside FastAPI's handling (it normally answers it itself)
            if started:
                raise
            await _json_error(error.status_code, error.detail, scope, receive, send)


class _TooLarge(HTTPException):
    """An HTTPException, so that FastAPI, which meets it while parsing the form, answers it (413 or 408)."""


async def _json_error(status: int, detail: str, scope, receive, send) -> None:
    await JSONResponse(status_code=status, content={"detail": detail})(scope, receive, send)


# --------------------------------------------------------------------------- building the artifacts

def build(out_dir: str | Path = DEFAULT_DIR, checkpoints: str | Path | None = None,
          splits: Sequence[str] = ("train", "validation"), backend: str = "exact",
          data_root: str | Path | None = None, threads: int | None = None, **index_params: Any) -> dict:
    """Export both models to ``out_dir`` and index the catalog photos of ``splits`` with the exported encoder.

    The catalog is embedded by the same ONNX graph that embeds queries, so both sides of a
    search go through identical arithmetic. Ids are paths relative to the dataset folder,
    labels are class names. The test split stays out of the default catalog: it is where the
    queries of notebook 06 and the load test come from.

    Returns:
        The manifest written to ``<out_dir>/service.json``.

    Raises:
        CheckpointError: a trained checkpoint is missing or refused (the message says why and how to make it).
        DatasetNotFoundError: the photos are not fetched.
    """
    from helper_utils.data import ClothingDataset, dataset_dir

    out_dir = Path(out_dir)
    paths = export_models(out_dir, checkpoints)
    encoder = onnx_session(paths["encoder"], threads)
    index = SearchIndex(backend, **index_params)
    root = dataset_dir(data_root)
    counts = {}
    for split in splits:
        dataset = ClothingDataset(split, root=data_root)
        embeddings = np.concatenate([encoder.run(["embeddings"], {INPUT_NAME: dataset.images[i:i + _EMBED_BATCH]})[0]
                                     for i in range(0, len(dataset), _EMBED_BATCH)])  # (N, D)
        ids = [Path(os.path.relpath(path, root)).as_posix() for path, _ in dataset.samples]
        index.add(embeddings, labels=[dataset.classes[t] for t in dataset.targets], ids=ids)
        counts[split] = len(dataset)
    index.save(out_dir / INDEX_DIR)
    manifest = {"built": _dt.datetime.now().isoformat(timespec="seconds"), "splits": counts, "size": len(index),
                "backend": backend, "params": index.params, "models": {name: p.name for name, p in paths.items()},
                "index": INDEX_DIR}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def is_built(folder: str | Path) -> bool:
    folder = Path(folder)
    return all((folder / name).exists() for name in (ENCODER_FILE, CLASSIFIER_FILE, INDEX_DIR))


# --------------------------------------------------------------------------- running it

def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    """Run an app with uvicorn in a background thread, on 127.0.0.1 only; for notebooks and tests.

    The server is the service's: uvicorn with a cap on open connections and a deadline for request
    headers (:mod:`helper_utils.going_further.connections`).

    Example::

        with BackgroundServer(app) as server:
            httpx.get(f"{server.url}/health")

    Args:
        app: the ASGI app.
        port: ``None`` picks a free port.
        log_level: uvicorn's log level ("warning" keeps a notebook's output quiet).
        max_connections: connections open at once (see :mod:`~helper_utils.going_further.connections`).
        header_timeout_s: seconds a connection may take to send its request headers.
    """

    def __init__(self, app, port: int | None = None, log_level: str = "warning",
                 max_connections: int = MAX_CONNECTIONS, header_timeout_s: float = HEADER_TIMEOUT_S) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = GuardedServer(server_config(app, self.port, max_connections=max_connections,
                                                  header_timeout_s=header_timeout_s, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        """Start serving; returns once the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped while starting (is the port in use?)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server on {self.url} did not start within {timeout:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to finish the requests in flight and exit; wait for its thread."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m helper_utils.going_further.serve", description=__doc__.splitlines()[0],
        epilog="Without a command, `run` is meant: `python -m helper_utils.going_further.serve --port 8000`.")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="export the ONNX models and index the catalog")
    b.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder to write (default: artifacts/service)")
    b.add_argument("--checkpoints", type=Path, help="folder of the trained checkpoints (default: checkpoints/)")
    b.add_argument("--splits", nargs="+", default=["train", "validation"], choices=["train", "validation", "test"],
                   help="splits that make up the catalog")
    b.add_argument("--backend", default="exact", choices=SearchIndex.BACKENDS, help="SearchIndex back end")
    b.add_argument("--data-root", type=Path, help="data root (default: data/ or $FASHION_KIT_DATA)")
    r = commands.add_parser("run", help="serve on 127.0.0.1 (builds first when the folder lacks the artifacts)")
    r.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the folder `build` wrote (default: artifacts/service)")
    r.add_argument("--port", type=_port, default=8000)
    r.add_argument("--threads", type=int_at_least(1), default=1, help="onnxruntime threads per model and request")
    r.add_argument("--image-root", type=Path, help="folder of the catalog photos (default: the dataset folder)")
    r.add_argument("--no-access-log", action="store_true", help="do not log every request (the load test uses it)")
    r.add_argument("--max-connections", type=int_at_least(1), default=MAX_CONNECTIONS,
                   help=f"connections open at once; the longest idle one is closed for a new one (default {MAX_CONNECTIONS})")
    r.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT_S,
                   help=f"seconds a connection may take to send its request headers (default {HEADER_TIMEOUT_S:.0f})")
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """``build`` or ``run``; bad input (arguments, missing or corrupt files, an unwritable folder) is one line, exit 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("build", "run", "-h", "--help"):
        argv = ["run", *argv]  # `python -m helper_utils.going_further.serve --port 8000` means `run`
    args = _parser().parse_args(argv)
    from helper_utils.archive import FetchError

    return run(lambda: _main(args), errors=(FetchError,))  # a CheckpointError is a ValueError: one line too


def _main(args: argparse.Namespace) -> int:
    if args.command == "build":
        _build_and_say(args.out, args.checkpoints, args.splits, args.backend, args.data_root)
        return 0
    if not is_built(args.dir):
        print(f"No service artifacts in {args.dir}: building them first "
              f"(python -m helper_utils.going_further.serve build --out {args.dir}).", flush=True)
        _build_and_say(args.dir)
    app = create_app(args.dir, args.dir / INDEX_DIR, image_root=args.image_root, threads=args.threads)
    print(f"Serving {len(app.state.index)} catalog photos on http://127.0.0.1:{args.port} "
          f"(docs: http://127.0.0.1:{args.port}/docs); Ctrl+C stops it.", flush=True)
    GuardedServer(server_config(app, args.port, max_connections=args.max_connections,
                                header_timeout_s=args.header_timeout, access_log=not args.no_access_log)).run()
    return 0


def _build_and_say(out: Path, *args) -> None:
    manifest = build(out, *args)
    print(f"Built {out}: {manifest['size']} catalog photos {manifest['splits']}, {manifest['backend']} index.",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
