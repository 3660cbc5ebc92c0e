"""A real aiohttp stand-in for Hyperliquid's POST /info on 127.0.0.1, serving documented-shape answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

HOST = "127.0.0.1"


class HyperliquidStandIn:
    """Serves meta, allMids and clearinghouseState from mutable dicts; `fault` forces one kind of bad answer."""

    def __init__(self, meta: dict[str, Any], mids: dict[str, str], states: dict[str, Any]) -> None:
        """Hold the answers to serve."""
        self.meta, self.mids, self.states = meta, mids, states
        self.fault: str | None = None  #: "http500" or "badjson"
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _info(self, request: web.Request) -> web.Response:
        """Answer one info request as the venue would (or with the planned fault)."""
        if self.fault == "http500":
            return web.Response(status=500, text="internal error")
        if self.fault == "badjson":
            return web.Response(text='{"universe": [', content_type="application/json")
        body = await request.json()
        kind = body.get("type")
        if kind == "meta":
            return web.json_response(self.meta)
        if kind == "allMids":
            return web.json_response(self.mids)
        if kind == "clearinghouseState":
            return web.json_response(self.states[body["user"]])
        return web.Response(status=422, text="unknown type")

    async def __aenter__(self) -> HyperliquidStandIn:
        """Start listening on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/info", self._info)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{HOST}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
