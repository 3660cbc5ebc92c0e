"""Slow and surplus clients of the API: a deadline for request headers and bodies, and a cap on open connections.

aiohttp bounds header sizes but not the time a client takes to send them, so a few hundred connections trickling
a request line a byte at a time would stay open for good. `ConnectionGuard` watches the server's connections
through the two calls aiohttp makes on `web.Server` when a connection opens and closes; the `connections`
middleware tells it when a request's headers have arrived and when its response has been written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("watcher.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GUARD: web.AppKey[dict[str, Any]] = web.AppKey("connection_guard", dict)


class ConnectionGuard:
    """Closes a connection that has not sent whole request headers in time, and the oldest idle one at the cap."""

    def __init__(
        self, server: web.Server, *, header_timeout: float, write_timeout: float, max_connections: int
    ) -> None:
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self.closed_slow = 0  #: connections closed for not sending their headers in time
        self.closed_for_room = 0  #: idle connections closed to make room, or newcomers refused when none was idle
        self._loop = asyncio.get_running_loop()
        # Insertion order is age order: the first idle entry is the oldest idle connection.
        self._timers: dict[RequestHandler, asyncio.TimerHandle | None] = {}
        self._busy: set[RequestHandler] = set()
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._opened(handler)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            lost(handler, exc)
            self._forget(handler)

        # Instance attributes shadow the methods: every RequestHandler calls its manager through them.
        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    @property
    def open(self) -> int:
        """Connections open now."""
        return len(self._timers)

    def _opened(self, handler: RequestHandler) -> None:
        if len(self._timers) >= self.max_connections:
            victim = next((h for h in self._timers if h not in self._busy), None)
            self.closed_for_room += 1
            if victim is None:
                # Every connection is serving a request: the newcomer is the one that cannot be let in.
                # Closed on the next turn of the loop, once aiohttp has finished setting it up.
                self._loop.call_soon(handler.force_close)
                return
            self._forget(victim)
            victim.force_close()
        self._timers[handler] = self._loop.call_later(self.header_timeout, self._expire, handler)

    def _forget(self, handler: RequestHandler) -> None:
        timer = self._timers.pop(handler, None)
        if timer is not None:
            timer.cancel()
        self._busy.discard(handler)

    def _expire(self, handler: RequestHandler) -> None:
        if handler in self._timers and handler not in self._busy:
            self.closed_slow += 1
            self._forget(handler)
            handler.force_close()

    def begin(self, handler: RequestHandler) -> None:
        """A request's headers have arrived: its connection is busy, not slow."""
        if handler not in self._timers:
            return
        timer = self._timers[handler]
        if timer is not None:
            timer.cancel()
        self._timers[handler] = None
        self._busy.add(handler)

    def end(self, handler: RequestHandler) -> None:
        """The response is written: the next request's headers are due within the header timeout again."""
        self._busy.discard(handler)
        if handler in self._timers:
            self._timers[handler] = self._loop.call_later(self.header_timeout, self._expire, handler)


def install(app: web.Application, runner: web.AppRunner, limits: dict[str, Any]) -> ConnectionGuard:
    """Guard the connections of a runner set up over `app` (after `runner.setup()`, before the site starts)."""
    server = runner.server
    assert server is not None, "install after runner.setup()"
    guard = ConnectionGuard(
        server,
        header_timeout=limits["header_timeout"],
        write_timeout=limits["body_timeout"],
        max_connections=limits["max_connections"],
    )
    app[GUARD]["guard"] = guard
    return guard


@web.middleware
async def connections(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: marks the connection busy, and writes the whole response (within a deadline) before it is idle."""
    guard: ConnectionGuard | None = request.app[GUARD].get("guard") if GUARD in request.app else None
    protocol = request.protocol
    if guard is None or not isinstance(protocol, RequestHandler):
        return await handler(request)
    guard.begin(protocol)
    try:
        resp = await handler(request)
        # A body refused or left unread (too large, too slow) leaves the rest of the stream unparseable, or at
        # best not worth reading: close after answering.
        unread = resp.status in (408, 413) or (request.can_read_body and not request.content.is_eof())
        if unread:
            resp.force_close()
        try:
            # Written here rather than by aiohttp after we return, so the connection counts as idle (and its
            # header timer restarts) only once the response is out; a client that does not read it gets cut off.
            async with asyncio.timeout(guard.write_timeout):
                await resp.prepare(request)
                await resp.write_eof()
        except (TimeoutError, ConnectionError):
            protocol.force_close()
            return resp
        if unread:
            protocol.force_close()
        return resp
    finally:
        guard.end(protocol)


__all__ = ["GUARD", "ConnectionGuard", "connections", "install"]
