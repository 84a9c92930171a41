"""The grading channel: what a kernel reports to the grader, signed so that learner code cannot forge it.

Each kernel has one pipe to the grader (the standard output of the process the grader
launched). Its first line, written before any learner code runs, is a fresh random key::

    key 5f0c...                                  (64 hex digits)

and every later line is a JSON message with its MAC, a BLAKE2b keyed with that key::

    9a41... {"kind": "record", "grader": "test_block", "answer": null, "cases": [...]}

Learner code runs in the same process and can write to the pipe, but cannot sign: on the
kernel side the key lives only in an audit hook (:mod:`unittests.grading.recorder`). The grader
keeps the lines whose MAC checks and counts the rest; one forged line rejects the notebook.
The grader reads at most ``MAX_BYTES`` of a channel and drops the rest, so a flood written to
it costs nothing (its cap is at the file-descriptor level, below anything learner code can
replace).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading

__all__ = ["MAX_BYTES", "key_line", "signed_line", "Reader"]

_KEY_PREFIX = b"key "
MAX_LINE = 256 * 1024  # bytes; a longer line is not a message the kit wrote
MAX_BYTES = 8 * 2**20  # read of one channel; beyond it the data is dropped and the channel counts as flooded


def _mac(key: bytes, payload: bytes) -> bytes:
    """The hex MAC of ``payload`` under ``key``."""
    return hashlib.blake2b(payload, key=key, digest_size=32).hexdigest().encode()


def key_line(key: bytes) -> bytes:
    return _KEY_PREFIX + key.hex().encode() + b"\n"


def signed_line(key: bytes, message: dict) -> bytes:
    """One signed line; the kernel's audit hook builds the same bytes without ``json`` (see recorder)."""
    payload = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode()
    return _mac(key, payload) + b" " + payload + b"\n"


class Reader:
    """Reads one channel in a background thread until end of file; keeps the messages whose MAC checks.

    Attributes:
        messages: the verified messages, in order.
        forged: lines that were not signed with the channel's key (or came before it).
        flooded: more than ``MAX_BYTES`` arrived.
        started: the key line arrived.
    """

    def __init__(self, fd: int) -> None:
        """Read ``fd`` (this reader's own descriptor: it closes it at the end)."""
        self.messages: list[dict] = []
        self.forged = 0
        self.flooded = False
        self.started = False
        self._key = b""
        self._fd = fd
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for end of file (every process holding the pipe is gone); False on timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        buffer, total = b"", 0
        try:
            while chunk := os.read(self._fd, 65536):
                total += len(chunk)
                if total > MAX_BYTES:
                    self.flooded = True
                    continue  # keep draining so that the writers never block, keep nothing
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._line(line)
                if len(buffer) > MAX_LINE:
                    self.forged += 1
                    buffer = b""
        except OSError:
            pass
        finally:
            os.close(self._fd)
        if buffer:
            self.forged += 1

    def _line(self, line: bytes) -> None:
        if not self.started and line.startswith(_KEY_PREFIX):
            try:
                self._key = bytes.fromhex(line[len(_KEY_PREFIX):].decode("ascii"))
                self.started = len(self._key) == 32
            except ValueError:
                pass
            if not self.started:
                self.forged += 1
            return
        signature, _, payload = line.partition(b" ")
        if not self.started or len(line) > MAX_LINE or not hmac.compare_digest(signature, _mac(self._key, payload)):
            self.forged += 1
            return
        try:
            message = json.loads(payload)
        except ValueError:
            self.forged += 1
            return
        if isinstance(message, dict):
            self.messages.append(message)
