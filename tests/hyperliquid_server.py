"""A real aiohttp stand-in for Hyperliquid's POST /info on 127.0.0.1, serving documented-shape answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.http_standin import LocalHttpServer


class HyperliquidStandIn(LocalHttpServer):
    """Serves meta, metaAndAssetCtxs, allMids and clearinghouseState from mutable dicts; `fault` forces a bad answer.

    `mids` are the MARK prices (markPx, what the venue liquidates at; the name is kept for callers that move prices
    through `server.mids`). The order-book mids served as midPx and by allMids are `book_mids` when given, else the
    marks: a test can make them differ to show the adapter margins at the mark.

    Faults for the fault suites, each held while `fault` names it (set it from any thread) and bounded by the server's
    stop: "down" answers HTTP 503; "stall" reads the request and answers nothing until the fault clears (then answers
    as usual); "trickle" sends a 200 and then one body byte every `trickle_every` seconds, and cuts the connection when
    the fault clears; "oversize" sends a 200 with a valid JSON body of `oversize_bytes`, chunked, no Content-Length.
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
        #: hourly funding rate served per coin ("0.0" where not named); None leaves the field out of the context
        self.funding: dict[str, str | None] = {}
        #: "http500", "badjson", "badutf8", "deepjson", "down", "stall", "trickle" or "oversize"
        self.fault: str | None = None
        self.trickle_every = 1.0  #: seconds between the bytes of a "trickle" answer
        self.oversize_bytes = 20_000_000  #: length of an "oversize" answer
        self.requests = 0  #: info requests that arrived, answered or not
        #: hourly closes per coin served by candleSnapshot: (open time ms, close) oldest first
        self.candles: dict[str, list[tuple[int, str]]] = {}
        #: a fault of candleSnapshot alone: "garbage" (not a list), "many" (every candle, ignoring the window),
        #: "badclose" (a close that is no decimal), "down" (HTTP 503), "stall" (no answer until cleared) or "slow"
        #: (the right answer after `candle_delay` seconds)
        self.candle_fault: str | None = None
        self.candle_delay = 0.5
        self.candle_requests = 0
        self._closing = False  #: set on stop: every held answer ends

    async def __aexit__(self, *exc: object) -> None:
        """End every held answer, then stop the server (which waits for its handlers)."""
        self._closing = True
        await super().__aexit__(*exc)

    async def _hold(self, while_: Callable[[], bool], seconds: float = float("inf")) -> None:
        """Wait while `while_()` holds and the server runs, at most `seconds` (polled: faults are set from threads)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while while_() and not self._closing and loop.time() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - loop.time())))

    @staticmethod
    def _cut(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.close()

    async def _stream(self, request: web.Request, kind: str) -> web.StreamResponse:
        """A 200 whose body trickles ("trickle") or runs to `oversize_bytes` ("oversize"); ends on fault change."""
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        head, tail = b'{"pad": "', b'"}'
        try:
            await response.prepare(request)
            await response.write(head)
            if kind == "trickle":
                while self.fault == "trickle" and not self._closing:
                    await response.write(b"x")
                    await self._hold(lambda: self.fault == "trickle", self.trickle_every)
                self._cut(request)  # never a complete answer: the client must have given up on its own
                return response
            left = self.oversize_bytes - len(head) - len(tail)
            block = b"x" * (1 << 16)
            while left > 0 and self.fault == "oversize" and not self._closing:
                await response.write(block[:left])
                left -= len(block)
            if left > 0:
                self._cut(request)
                return response
            await response.write(tail)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client gave up reading: what these faults are for
        return response

    async def _info(self, request: web.Request) -> web.StreamResponse:
        """Answer one info request as the venue would (or with the planned fault)."""
        self.requests += 1
        raw = await request.read()
        if b"candleSnapshot" in raw:
            return await self._candles(json.loads(raw)["req"])
        if self.fault == "stall":
            await self._hold(lambda: self.fault == "stall")
            if self._closing:
                self._cut(request)
                return web.Response(status=503, text="stopping")  # never reaches the client: the connection is cut
        if self.fault in ("trickle", "oversize"):
            return await self._stream(request, self.fault)
        if self.fault == "down":
            return web.Response(status=503, text="service unavailable")
        if self.fault == "http500":
            return web.Response(status=500, text="internal error")
        if self.fault == "badjson":
            return web.Response(text='{"universe": [', content_type="application/json")
        if self.fault == "badutf8":
            return web.Response(body=b'{"universe": "\xff\xfe"}', content_type="application/json")
        if self.fault == "deepjson":
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")
        body = json.loads(raw)
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

    async def _candles(self, req: dict[str, Any]) -> web.Response:
        """candleSnapshot: the candles of `req["coin"]` opening in [startTime, endTime], hourly, or the candle fault."""
        self.candle_requests += 1
        fault = self.candle_fault
        if fault == "stall":
            await self._hold(lambda: self.candle_fault == "stall")
            return web.Response(status=503, text="stalled")
        if fault == "down":
            return web.Response(status=503, text="service unavailable")
        if fault == "slow":
            await self._hold(lambda: True, self.candle_delay)
        if fault == "garbage":
            return web.json_response({"candles": "soon"})
        coin, hour = req["coin"], 3_600_000
        rows = [
            {
                "t": t,
                "T": t + hour - 1,
                "s": coin,
                "i": req["interval"],
                "o": c,
                "c": c,
                "h": c,
                "l": c,
                "v": "1.0",
                "n": 1,
            }
            for t, c in self.candles.get(coin, [])
            if fault == "many" or req["startTime"] <= t <= req["endTime"]
        ]
        if fault == "badclose" and rows:
            rows[-1]["c"] = "NaN"
        return web.json_response(rows)

    def _ctx(self, coin: str, book: dict[str, str]) -> dict[str, Any]:
        """One perp asset context in the documented shape; markPx left out for a coin without a mark."""
        ctx: dict[str, Any] = {"funding": "0.0", "openInterest": "0.0", "premium": "0.0", "dayNtlVlm": "0.0"}
        if coin in self.funding:
            rate = self.funding[coin]
            if rate is None:
                del ctx["funding"]
            else:
                ctx["funding"] = rate
        if coin in self.mids:
            mark = self.mids[coin]
            ctx |= {"markPx": mark, "oraclePx": mark, "prevDayPx": mark}
        if coin in book:
            ctx |= {"midPx": book[coin], "impactPxs": [book[coin], book[coin]]}
        return ctx

    def routes(self, app: web.Application) -> None:
        """The routes this stand-in serves."""
        app.router.add_post("/info", self._info)
