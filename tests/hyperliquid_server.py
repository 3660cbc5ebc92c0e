"""A real aiohttp stand-in for Hyperliquid's POST /info on 127.0.0.1, serving documented-shape answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.http_standin import LocalHttpServer


class HyperliquidStandIn(LocalHttpServer):
    """Serves meta, metaAndAssetCtxs, allMids and clearinghouseState from mutable dicts; `fault` forces a bad answer.

    `mids` are the MARK prices (markPx, what the venue liquidates at; the name is kept for callers that move prices
    through `server.mids`). The order-book mids served as midPx and by allMids are `book_mids` when given, else the
    marks: a test can make them differ to show the adapter margins at the mark.
    """

    def __init__(
        self,
        meta: dict[str, Any],
        mids: dict[str, str],
        states: dict[str, Any],
        book_mids: dict[str, str] | None = None,
    ) -> None:
        """Hold the answers to serve."""
        self.meta, self.mids, self.states = meta, mids, states
        self.book_mids = book_mids
        self.fault: str | None = None  #: "http500", "badjson", "badutf8" or "deepjson"

    async def _info(self, request: web.Request) -> web.Response:
        """Answer one info request as the venue would (or with the planned fault)."""
        if self.fault == "http500":
            return web.Response(status=500, text="internal error")
        if self.fault == "badjson":
            return web.Response(text='{"universe": [', content_type="application/json")
        if self.fault == "badutf8":
            return web.Response(body=b'{"universe": "\xff\xfe"}', content_type="application/json")
        if self.fault == "deepjson":
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")
        body = await request.json()
        kind = body.get("type")
        if kind == "meta":
            return web.json_response(self.meta)
        book = self.mids if self.book_mids is None else self.book_mids
        if kind == "allMids":
            return web.json_response(book)
        if kind == "metaAndAssetCtxs":
            return web.json_response([self.meta, [self._ctx(a["name"], book) for a in self.meta["universe"]]])
        if kind == "clearinghouseState":
            return web.json_response(self.states[body["user"]])
        return web.Response(status=422, text="unknown type")

    def _ctx(self, coin: str, book: dict[str, str]) -> dict[str, Any]:
        """One perp asset context in the documented shape; markPx left out for a coin without a mark."""
        ctx: dict[str, Any] = {"funding": "0.0", "openInterest": "0.0", "premium": "0.0", "dayNtlVlm": "0.0"}
        if coin in self.mids:
            mark = self.mids[coin]
            ctx |= {"markPx": mark, "oraclePx": mark, "prevDayPx": mark}
        if coin in book:
            ctx |= {"midPx": book[coin], "impactPxs": [book[coin], book[coin]]}
        return ctx

    def routes(self, app: web.Application) -> None:
        """The routes this stand-in serves."""
        app.router.add_post("/info", self._info)
