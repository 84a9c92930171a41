"""The search service's HTTP server under hostile connections: uvicorn, with three guards added.

uvicorn accepts every connection it is offered and waits for its request for as long as the
client likes; each waiting connection holds a file descriptor, and a process has 1,024 of them by
default. Clients that connect and never finish their headers ("slowloris") use them all up, and
then uvicorn can accept nothing, not even ``/health``, while asyncio logs a traceback for every
refused ``accept()``. Three guards, in :class:`GuardedH11Protocol` and :class:`GuardedServer`:

* **a cap on open connections** (``max_connections``). When a new connection would pass it, the
  connection that has waited longest for its request headers is closed to make room; only when
  every connection is busy with a request is the newcomer closed instead. A client that sends its
  request at once (curl, a browser, ``/health`` checks) is served even under a flood of idle ones;
* **a deadline for request headers** (``header_timeout_s``): a connection whose request line and
  headers are not complete that long after it opened, or after it began a request on a kept-alive
  connection, is closed. uvicorn's own keep-alive timeout covers the time between requests, and
  the service's upload guard the time a body may take;
* **accept errors logged at most once every** ``log_every_s`` seconds, with a count, instead of
  once per refused connection (the flood that used up the descriptors would fill the disk next);
  and accepting a whole backlog at once is capped (``backlog``), so a burst of connections cannot
  take more descriptors than the cap leaves free before the oldest idle ones are closed. Should
  ``accept()`` run out of descriptors all the same, the oldest idle connections are closed at once.

The cap and the backlog shrink to fit a process whose descriptor limit is lower than they assume
(:func:`fitted_limits`), keeping ``FD_RESERVE`` descriptors for the rest of the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["MAX_CONNECTIONS", "HEADER_TIMEOUT_S", "BACKLOG", "GuardedH11Protocol",
           "GuardedServer", "fitted_limits", "server_config"]

MAX_CONNECTIONS = 200  # well under the 1,024 descriptors a process gets by default, with room for files and models
HEADER_TIMEOUT_S = 10.0  # a client sends its request line and headers in milliseconds; 10 s forgives a slow link
BACKLOG = 256  # connections accepted in one burst (and queued by the kernel): the cap plus this stays under 1,024
LOG_EVERY_S = 10.0  # at most one log line per this many seconds about refused accept() calls
FD_RESERVE = 128  # descriptors kept for all but connections: models, decode workers' pipes, spooled uploads, logs
SHED_ON_ACCEPT_ERROR = 16  # idle connections closed when accept() runs out of descriptors all the same

_logger = logging.getLogger("uvicorn.error")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a cap on open connections and a deadline for request headers."""

    max_connections: int = MAX_CONNECTIONS
    header_timeout_s: float = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_since = time.monotonic()
        self._arm_header_timer()
        self._keep_under_the_cap()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()  # a new request begins on a kept-alive connection
        scope = self.scope
        super().data_received(data)
        if self.scope is not scope:  # h11 produced a request: its headers are complete
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    # -- the deadline
    def _arm_header_timer(self) -> None:
        self._waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.abort()  # nothing to answer: the request never arrived

    # -- the cap
    def _waiting_for_headers(self) -> bool:
        return getattr(self, "_header_timer", None) is not None and not self.transport.is_closing()

    def _keep_under_the_cap(self) -> None:
        open_connections = [c for c in self.connections if not c.transport.is_closing()]
        if len(open_connections) <= self.max_connections:
            return
        waiting = [c for c in open_connections if c is not self and c._waiting_for_headers()]
        victim = min(waiting, key=lambda c: c._waiting_since, default=self)  # the longest idle, else the newcomer
        victim._disarm_header_timer()
        victim.transport.abort()


def _guarded_protocol(max_connections: int = MAX_CONNECTIONS, header_timeout_s: float = HEADER_TIMEOUT_S) -> type:
    """A :class:`GuardedH11Protocol` subclass with these limits (uvicorn takes a class, not an instance)."""
    if max_connections < 1 or header_timeout_s <= 0:
        raise ValueError(f"need max_connections >= 1 and header_timeout_s > 0, got {max_connections} and "
                         f"{header_timeout_s}")
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"max_connections": int(max_connections), "header_timeout_s": float(header_timeout_s)})


class GuardedServer(uvicorn.Server):
    """``uvicorn.Server`` whose event loop logs refused ``accept()`` calls at most once every ``LOG_EVERY_S``."""

    def __init__(self, config: uvicorn.Config, log_every_s: float = LOG_EVERY_S) -> None:
        super().__init__(config)
        self.log_every_s = log_every_s
        self.accept_errors = 0  # refused accept() calls so far (too many open files, ...)
        self._logged_at, self._unlogged = -float("inf"), 0

    async def startup(self, sockets: Any = None) -> None:
        asyncio.get_running_loop().set_exception_handler(self._exception_handler)
        await super().startup(sockets)

    def _exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            loop.default_exception_handler(context)
            return
        self.accept_errors += 1
        self._unlogged += 1
        idle = sorted((c for c in self.server_state.connections
                       if isinstance(c, GuardedH11Protocol) and c._waiting_for_headers()), key=lambda c: c._waiting_since)
        for connection in idle[:SHED_ON_ACCEPT_ERROR]:  # give descriptors back to accept()
            connection._disarm_header_timer()
            connection.transport.abort()
        now = time.monotonic()
        if now - self._logged_at >= self.log_every_s:
            error = context.get("exception")
            reason = getattr(error, "strerror", None) or type(error).__name__
            _logger.warning("could not accept new connections %d time(s) since the last such message (%s); "
                            "the service keeps running", self._unlogged, reason)
            self._logged_at, self._unlogged = now, 0


def fitted_limits(max_connections: int = MAX_CONNECTIONS, backlog: int = BACKLOG) -> tuple[int, int]:
    """``(max_connections, backlog)``, made smaller when this process's descriptor limit has no room for both.

    Open connections, plus one accepted burst, plus ``FD_RESERVE`` must fit in the soft
    ``RLIMIT_NOFILE`` (1,024 on most systems): then ``accept()`` never runs out of descriptors.
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # Windows: no such limit to fit
        return max_connections, backlog
    if soft == resource.RLIM_INFINITY or max_connections + backlog <= soft - FD_RESERVE:
        return max_connections, backlog
    room = max(2, soft - FD_RESERVE)
    cap = max(1, min(max_connections, room // 2))
    return cap, max(1, min(backlog, room - cap))


def server_config(app: Any, port: int, *, max_connections: int = MAX_CONNECTIONS,
                  header_timeout_s: float = HEADER_TIMEOUT_S, log_level: str = "info",
                  access_log: bool = True) -> uvicorn.Config:
    """The uvicorn configuration of the service: 127.0.0.1 only, the guarded protocol, a bounded backlog.

    ``max_connections`` and the backlog are fitted to the process's descriptor limit (:func:`fitted_limits`).
    """
    max_connections, backlog = fitted_limits(max_connections)
    return uvicorn.Config(app, host="127.0.0.1", port=port, http=_guarded_protocol(max_connections, header_timeout_s),
                          backlog=backlog, log_level=log_level, access_log=access_log)
