"""Decoding uploads in worker processes: a hard time limit per decode, and a bounded memory per slot.

The service never decodes an upload in its own process. Each decode slot is a worker process
(``python -m helper_utils.going_further.decoding``) that reads one upload from its stdin, decodes it
with :func:`helper_utils.images.decode_image`, resizes it for the models and writes the pixels
back. Why processes and not threads:

* **a time limit that really stops the work.** A decoder is C code; a thread running it can be
  neither interrupted nor killed, so a hostile file (a JPEG "scan bomb") would keep a core busy
  long after its client gave up. A worker that does not answer within ``time_limit_s`` is killed
  (SIGKILL) and a fresh one takes its slot: a file costs at most that much CPU;
* **memory that is given back.** A large decode grows the worker's heap; the worker is its own
  process, so that memory is never mixed with the service's, and a killed worker returns all of it;
* **a crash stays in the worker.** A decoder bug that crashes the process fails one request.

The pixels come back already resized to the models' input (``size x size x 3`` uint8), so the
full-size image never leaves the worker. Each reply also carries the worker's peak memory
(resident set) during that decode, which ``python -m tools.decode_memory`` reports.

Protocol on the pipes (all integers big-endian): the service sends an 8-byte length and the
upload's bytes; the worker answers one byte (``P`` pixels, ``E`` error), an 8-byte peak resident
size in KiB, a 4-byte length and the payload (the pixels, or the error message as UTF-8).
"""

from __future__ import annotations

import json
import queue
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

from helper_utils.images import MAX_UPLOAD_BYTES, QueryImageError

__all__ = ["DECODE_TIME_LIMIT_S", "SLOT_MEMORY_MIB", "DecodeResult", "DecodeTimeout", "DecoderBusy", "DecodePool", "DecodeWorker"]

DECODE_TIME_LIMIT_S = 10.0  # far above what a photo at the pixel limits takes (tools/decode_memory.py times them)
SLOT_MEMORY_MIB = 128  # the most one decode may add to its worker at the pixel limits (tools/decode_memory.py)
STARTUP_TIMEOUT_S = 60.0  # a worker's start (Python, numpy, Pillow) is not counted in the decode's limit
_READY = b"R"  # the first byte a worker writes, once it can decode
_REQUEST = struct.Struct(">Q")  # upload length
_REPLY = struct.Struct(">cQI")  # kind, peak resident KiB, payload length


class DecodeTimeout(QueryImageError):
    """The upload took longer than the time limit to decode; its worker was killed and replaced."""


class DecoderBusy(RuntimeError):
    """Every decode slot stayed busy for longer than the caller was willing to wait."""


@dataclass(frozen=True)
class DecodeResult:
    """What a worker sent back: the models' input and what the decode cost.

    Attributes:
        pixels: uint8 ``(size, size, 3)``.
        peak_rss_kib: the worker's peak resident memory during this decode, in KiB.
        seconds: wall time from sending the upload to the answer.
    """

    pixels: np.ndarray
    peak_rss_kib: int
    seconds: float


class DecodeWorker:
    """One worker process: send it an upload, get the pixels back within a time limit, or kill it.

    A thread of the service reads the worker's answers as they come (plain blocking reads, so it
    works on any operating system); :meth:`decode` waits for the next one at most ``time_limit_s``.

    Args:
        size: side of the square pixels it returns (the models' input).
        max_bytes: uploads larger than this are refused by the worker (and should not be sent).
    """

    def __init__(self, size: int = 64, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.size, self.max_bytes = int(size), int(max_bytes)
        settings = json.dumps({"size": self.size, "max_bytes": self.max_bytes})
        self.process = subprocess.Popen([sys.executable, "-m", __name__, settings], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        self.ready = False
        self._answers: queue.Queue[tuple | None] = queue.Queue()
        threading.Thread(target=self._read_answers, name=f"decode-worker-{self.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def decode(self, data: bytes, time_limit_s: float = DECODE_TIME_LIMIT_S, name: str = "the upload") -> DecodeResult:
        """Decode ``data`` in this worker.

        Raises:
            QueryImageError: the image is refused or unreadable (the worker's message).
            DecodeTimeout: no answer within ``time_limit_s``: the caller must :meth:`kill` this worker.
            RuntimeError: the worker died while decoding (the caller must replace it).
            OSError: the worker never started.
        """
        self.wait_until_ready()
        start = time.monotonic()
        try:
            self.process.stdin.write(_REQUEST.pack(len(data)) + data)  # the worker reads it at once: it is idle
            self.process.stdin.flush()
            answer = self._answers.get(timeout=time_limit_s)
        except queue.Empty:
            raise DecodeTimeout(f"{name} took longer than {time_limit_s:.0f} s to decode, far longer than a photo "
                                "does; it was stopped: send a smaller or simpler photo") from None
        except OSError as error:  # a broken pipe: the worker is gone
            raise RuntimeError(f"the decode worker {self.pid} stopped ({type(error).__name__})") from None
        if answer is None:
            raise RuntimeError(f"the decode worker {self.pid} stopped")
        kind, peak_kib, payload = answer
        if kind == b"E":
            raise QueryImageError(payload.decode("utf-8", "replace"))
        pixels = np.frombuffer(payload, dtype=np.uint8).reshape(self.size, self.size, 3)
        return DecodeResult(pixels, peak_kib, time.monotonic() - start)

    def wait_until_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Block until the worker has started (its imports done); a worker that cannot start is an OSError."""
        if self.ready:
            return
        try:
            answer = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            answer = None
        if answer != _READY:
            raise OSError(f"the decode worker {self.pid} did not start")
        self.ready = True

    def _read_answers(self) -> None:
        """The reader thread: the ready byte, then one ``(kind, peak KiB, payload)`` per upload; ``None`` at the end."""
        out = self.process.stdout
        try:
            if out.read(1) != _READY:
                return
            self._answers.put(_READY)
            while True:
                header = out.read(_REPLY.size)
                if len(header) < _REPLY.size:
                    return
                kind, peak_kib, length = _REPLY.unpack(header)
                payload = out.read(length)
                if len(payload) < length:
                    return
                self._answers.put((kind, peak_kib, payload))
        except (OSError, ValueError):  # the pipe was closed under the thread
            return
        finally:
            self._answers.put(None)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Stop the worker now (SIGKILL: whatever its decoder was doing) and reap it."""
        _kill(self.process)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a SIGKILLed process that does not end
        pass
    for pipe in (process.stdin, process.stdout):
        try:
            pipe.close()
        except OSError:
            pass


class DecodePool:
    """``slots`` decode workers shared by the service's request threads; at most ``slots`` decodes at once.

    Workers start on first use. A request waits up to ``wait_s`` for a free slot, then gets
    :class:`DecoderBusy`. A worker that times out or dies is replaced at once, in its slot.

    Args:
        slots: how many uploads are decoded at the same time (and how many worker processes run).
        time_limit_s: the hard limit of one decode.
        size: side of the pixels returned (the models' input).
        max_bytes: the upload limit the workers enforce too.
        wait_s: how long a request may wait for a free slot.
    """

    def __init__(self, slots: int = 2, time_limit_s: float = DECODE_TIME_LIMIT_S, size: int = 64,
                 max_bytes: int = MAX_UPLOAD_BYTES, wait_s: float = 30.0) -> None:
        if slots < 1 or time_limit_s <= 0:
            raise ValueError(f"need slots >= 1 and time_limit_s > 0, got {slots} and {time_limit_s}")
        self.slots, self.time_limit_s, self.size, self.max_bytes, self.wait_s = slots, time_limit_s, size, max_bytes, wait_s
        self._idle: queue.Queue[DecodeWorker | None] = queue.Queue()
        for _ in range(slots):
            self._idle.put(None)  # started on first use
        self._workers: set[DecodeWorker] = set()
        self._lock = threading.Lock()
        self.busy = self.peak_busy = self.replaced = 0
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    def decode(self, data: bytes, name: str = "the upload") -> DecodeResult:
        """The upload's pixels, decoded in a free worker within the time limit.

        Raises:
            QueryImageError: refused or unreadable (:class:`DecodeTimeout` when it took too long).
            DecoderBusy: no slot was free within ``wait_s``.
        """
        try:
            worker = self._idle.get(timeout=self.wait_s)
        except queue.Empty:
            raise DecoderBusy(f"all {self.slots} decode slots stayed busy for {self.wait_s:.0f} s") from None
        with self._lock:
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)
        try:
            worker = worker if worker is not None and worker.alive() else self._start()
            try:
                return worker.decode(data, self.time_limit_s, name)
            except DecodeTimeout:
                worker = self._replace(worker)
                raise
            except RuntimeError:  # the worker died under this upload (a decoder crash): the upload is to blame
                worker = self._replace(worker)
                raise QueryImageError(f"{name} could not be decoded (the decoder stopped on it); "
                                      "send another photo") from None
        finally:
            with self._lock:
                self.busy -= 1
            self._idle.put(worker)

    def start(self) -> "DecodePool":
        """Start every worker now, in the background, instead of on first use (the service does at start-up)."""
        started = []
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            started.append(worker if worker is not None and worker.alive() else self._start())
        for worker in started:
            self._idle.put(worker)
        return self

    def _start(self) -> DecodeWorker:
        worker = DecodeWorker(self.size, self.max_bytes)
        with self._lock:
            self._workers.add(worker)
        return worker

    def _replace(self, worker: DecodeWorker) -> DecodeWorker:
        worker.kill()
        with self._lock:
            self._workers.discard(worker)
            self.replaced += 1
        return self._start()

    def pids(self) -> list[int]:
        """The process ids of the running workers."""
        with self._lock:
            return sorted(w.pid for w in self._workers if w.alive())

    def close(self) -> None:
        """Stop every worker (the service calls it when it shuts down)."""
        self._finalizer()


def _kill_all(workers: set[DecodeWorker]) -> None:
    for worker in list(workers):
        _kill(worker.process)
    workers.clear()


# --------------------------------------------------------------------------- the worker process

def _peak_rss_kib() -> int:
    """This process's peak resident size since the last reset (Linux), else since it started."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # Linux: reset VmHWM to the current resident size
    except OSError:
        pass


def _serve(settings: dict, stdin, stdout) -> None:
    """Answer uploads one by one until the service closes the pipe."""
    from helper_utils.images import decode_image, resize_for_model

    size, max_bytes = int(settings["size"]), int(settings["max_bytes"])
    stdout.write(_READY)
    stdout.flush()
    while True:
        header = stdin.read(_REQUEST.size)
        if len(header) < _REQUEST.size:
            return  # the service went away: so does the worker
        (length,) = _REQUEST.unpack(header)
        data = stdin.read(length)
        if len(data) < length:
            return
        _reset_peak_rss()
        try:
            pixels = resize_for_model(decode_image(data, name="the upload", max_bytes=max_bytes), size)
            kind, payload = b"P", np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
        except QueryImageError as error:
            kind, payload = b"E", str(error).encode("utf-8")
        except MemoryError:
            kind, payload = b"E", b"the upload needs more memory to decode than a photo does; send a smaller photo"
        del data
        stdout.write(_REPLY.pack(kind, _peak_rss_kib(), len(payload)) + payload)
        stdout.flush()


def main() -> int:
    """The worker's entry point: ``python -m helper_utils.going_further.decoding '{"size": 64, ...}'``."""
    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"size": 64, "max_bytes": MAX_UPLOAD_BYTES}
    try:
        _serve(settings, sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
