"""helper_utils.going_further.connections: the connection cap, the header deadline and the capped accept-error log."""

import logging
import socket
import time

import pytest
import uvicorn

from helper_utils.going_further import connections
from helper_utils.going_further.connections import GuardedH11Protocol, GuardedServer, fitted_limits


async def _app(scope, receive, send):  # the smallest ASGI app: 200 "ok" to everything
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


@pytest.mark.parametrize("soft, expected", [(1024, (200, 256)), (160, (16, 16)), (4096, (200, 256))])
def test_the_cap_and_backlog_fit_the_descriptor_limit(monkeypatch, soft, expected):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, 1_000_000))
    assert fitted_limits(200, 256) == expected
    cap, backlog = fitted_limits(200, 256)
    assert cap + backlog + connections.FD_RESERVE <= max(soft, 200 + 256 + connections.FD_RESERVE)


def test_the_defaults_fit_the_usual_descriptor_limit():
    """1,024 descriptors (most systems' soft limit) hold the default cap, one burst and the reserve."""
    assert connections.MAX_CONNECTIONS + connections.BACKLOG + connections.FD_RESERVE <= 1024


def test_idle_connections_over_the_cap_are_closed_oldest_first():
    from helper_utils.going_further.serve import BackgroundServer

    with BackgroundServer(_app, max_connections=3, header_timeout_s=30) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(6)]
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        closed = 0
        for sock in idle:
            sock.settimeout(2)
            try:
                closed += sock.recv(10) == b""
            except (socket.timeout, ConnectionResetError):
                closed += 0
            sock.close()
    assert closed >= 3  # the cap held: the oldest idle ones made room


def test_a_connection_that_never_sends_its_headers_is_closed_after_the_deadline():
    from helper_utils.going_further.serve import BackgroundServer

    with BackgroundServer(_app, header_timeout_s=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            sock.settimeout(10)
            start = time.monotonic()
            assert sock.recv(10) == b"" and time.monotonic() - start < 5


class _Transport:
    def __init__(self):
        self.closed = False

    def is_closing(self):
        return self.closed

    def abort(self):
        self.closed = True


def _idle_connection(since: float) -> GuardedH11Protocol:
    connection = GuardedH11Protocol.__new__(GuardedH11Protocol)  # only what the server's handler looks at
    connection.transport, connection._waiting_since = _Transport(), since
    connection._header_timer = type("Timer", (), {"cancel": lambda self: None})()
    return connection


def test_accept_errors_are_logged_at_most_once_per_period_and_free_descriptors():
    server = GuardedServer(uvicorn.Config(_app, log_config=None), log_every_s=3600)
    idle = [_idle_connection(since) for since in range(40)]
    server.server_state.connections.update(idle)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        error = OSError(24, "Too many open files")
        for _ in range(1000):
            server._exception_handler(None, {"message": "socket.accept() out of system resource", "exception": error})
    finally:
        logger.removeHandler(handler)
    assert server.accept_errors == 1000 and len(records) == 1
    assert "Too many open files" in records[0].getMessage()
    assert all(c.transport.closed for c in idle)  # the oldest idle connections gave their descriptors back
