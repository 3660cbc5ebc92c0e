"""A base for the venue stand-ins: an aiohttp app on a free port of 127.0.0.1, as an async context manager."""

from __future__ import annotations

from typing import Self

from aiohttp import web

HOST = "127.0.0.1"


class LocalHttpServer:
    """Subclasses add their routes in `routes`; `url` is set once the server listens."""

    url = ""
    _runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        """Register the stand-in's routes."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        """Start listening on a free port of 127.0.0.1."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        self.url = f"http://{HOST}:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
