"""A stand-in of the dYdX v4 indexer (comlink) REST API on 127.0.0.1, serving documented-shape answers.

It serves GET /v4/perpetualMarkets, GET /v4/addresses/{address}/subaccountNumber/{n} and hourly candles
(GET /v4/candles/perpetualMarkets/{ticker}) from plain dicts, computes
equity and freeCollateral the way comlink's calculateEquityAndFreeCollateral does (sum of size * oracle price plus
USDC; minus |notional| * base initial margin fraction), and can be switched to one kind of bad answer via `fault`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from aiohttp import web

from tests.http_standin import LocalHttpServer

FAULTS = (
    "http500",
    "http429",
    "badjson",
    "badutf8",
    "deepjson",
    "unknown_market",
    "slow",
    "missing_field",
    "zero_price",
    "wrong_shape",
    "candles_garbage",
    "candles_oversize",
    "candles_unordered",
)


def num(x: Fraction | int | str) -> str:
    """A number with a finite decimal expansion as the indexer's plain decimal string (no exponent)."""
    x = Fraction(x)
    sign = "-" if x < 0 else ""
    whole, rest = divmod(abs(x), 1)
    digits = ""
    while rest:
        if len(digits) > 40:
            raise ValueError(f"{x} has no short decimal expansion")
        rest *= 10
        d, rest = divmod(rest, 1)
        digits += str(d)
    return f"{sign}{whole}" + (f".{digits}" if digits else "")


def market(
    ticker: str,
    oracle: str,
    imf: str,
    mmf: str,
    atomic_resolution: int,
    open_interest: str = "0",
    lower_cap: str = "0",
    upper_cap: str = "0",
    market_type: str = "CROSS",
) -> dict[str, Any]:
    """One /v4/perpetualMarkets entry with every documented field."""
    return {
        "clobPairId": "0",
        "ticker": ticker,
        "status": "ACTIVE",
        "oraclePrice": oracle,
        "priceChange24H": "0",
        "volume24H": "0",
        "trades24H": 0,
        "nextFundingRate": "0",
        "initialMarginFraction": imf,
        "maintenanceMarginFraction": mmf,
        "openInterest": open_interest,
        "atomicResolution": atomic_resolution,
        "quantumConversionExponent": -9,
        "tickSize": "0.01",
        "stepSize": "0.001",
        "stepBaseQuantums": 1000,
        "subticksPerTick": 100,
        "marketType": market_type,
        "openInterestLowerCap": lower_cap,
        "openInterestUpperCap": upper_cap,
        "baseOpenInterest": "0",
        "defaultFundingRate1H": "0",
    }


class DydxIndexerStandIn(LocalHttpServer):
    """Serves markets and subaccounts; subaccounts are {(address, n): {"usdc": str, "positions": {ticker: {...}}}}."""

    def __init__(self, markets: dict[str, dict[str, Any]], subaccounts: dict[tuple[str, int], dict[str, Any]]) -> None:
        """Hold the state to serve; positions are {"size": signed str, "entryPrice": str}."""
        self.markets, self.subaccounts = markets, subaccounts
        self.fault: str | None = None
        self.slow_seconds = 1.0
        self.equity_offset = Fraction(0)  #: added to served equity, to make the indexer disagree with the chain
        self.height = 1234
        self.lag = 0.0  #: seconds the served /v4/height time lags the clock (a stuck indexer)
        self.requests = 0
        #: ticker -> [(hour start unix seconds, close)], oldest first, served by the candles route
        self.candles: dict[str, list[tuple[int, str]]] = {}
        self.candle_queries: list[dict[str, str]] = []

    def set_price(self, ticker: str, price: Fraction | str) -> None:
        """Move one market's oracle price."""
        self.markets[ticker]["oraclePrice"] = num(price)

    def _fault(self) -> web.Response | None:
        if self.fault == "http500":
            return web.json_response({"errors": [{"msg": "Internal Server Error"}]}, status=500)
        if self.fault == "http429":
            return web.json_response(
                {"errors": [{"msg": "Too many requests"}]}, status=429, headers={"Retry-After": "7"}
            )
        if self.fault == "badjson":
            return web.Response(text='{"markets": {"BTC-USD": ', content_type="application/json")
        if self.fault == "badutf8":
            return web.Response(body=b'{"markets": "\xff\xfe"}', content_type="application/json")
        if self.fault == "deepjson":
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")
        return None

    async def _height(self, request: web.Request) -> web.Response:
        """GET /v4/height: the indexer's latest block and its time (`lag` seconds behind now)."""
        at = datetime.fromtimestamp(time.time() - self.lag, UTC).isoformat(timespec="milliseconds")
        return web.json_response({"height": str(self.height), "time": at.replace("+00:00", "Z")})

    async def _markets(self, request: web.Request) -> web.Response:
        """GET /v4/perpetualMarkets."""
        self.requests += 1
        if self.fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if (bad := self._fault()) is not None:
            return bad
        served = {k: dict(v) for k, v in self.markets.items()}
        if self.fault == "unknown_market":
            served.pop(sorted(served)[0])
        elif self.fault == "missing_field":
            for v in served.values():
                v.pop("oraclePrice")
        elif self.fault == "zero_price":
            for v in served.values():
                v["oraclePrice"] = "0"
        elif self.fault == "wrong_shape":
            return web.json_response({"markets": list(served.values())})
        return web.json_response({"markets": served})

    def subaccount_body(self, address: str, n: int) -> dict[str, Any]:
        """The subaccount object comlink would serve for this state."""
        state = self.subaccounts[(address, n)]
        usdc = Fraction(state["usdc"])
        equity, initial = usdc, Fraction(0)
        positions = {}
        for ticker, pos in state["positions"].items():
            size = Fraction(pos["size"])
            m = self.markets[ticker]
            oracle = Fraction(m["oraclePrice"])
            entry = Fraction(pos["entryPrice"])
            equity += size * oracle
            initial += abs(size) * oracle * Fraction(m["initialMarginFraction"])
            positions[ticker] = {
                "market": ticker,
                "status": "OPEN",
                "side": "LONG" if size > 0 else "SHORT",
                "size": num(size),
                "maxSize": num(size),
                "entryPrice": num(entry),
                "realizedPnl": "0",
                "createdAt": "2025-01-01T00:00:00.000Z",
                "createdAtHeight": "1000",
                "sumOpen": num(abs(size)),
                "sumClose": "0",
                "netFunding": pos.get("netFunding", "0"),
                "unrealizedPnl": num(size * (oracle - entry)),
                "closedAt": None,
                "exitPrice": None,
                "subaccountNumber": n,
            }
        assets = {}
        if usdc:
            assets["USDC"] = {
                "symbol": "USDC",
                "side": "LONG" if usdc > 0 else "SHORT",
                "size": num(abs(usdc)),
                "assetId": "0",
                "subaccountNumber": n,
            }
        return {
            "address": address,
            "subaccountNumber": n,
            "equity": num(equity + self.equity_offset),
            "freeCollateral": num(equity + self.equity_offset - initial),
            "openPerpetualPositions": positions,
            "assetPositions": assets,
            "marginEnabled": True,
            "updatedAtHeight": str(self.height - 10),
            "latestProcessedBlockHeight": str(self.height),
        }

    async def _subaccount(self, request: web.Request) -> web.Response:
        """GET /v4/addresses/{address}/subaccountNumber/{n}."""
        self.requests += 1
        if self.fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if (bad := self._fault()) is not None:
            return bad
        address, n = request.match_info["address"], int(request.match_info["n"])
        if (address, n) not in self.subaccounts:
            msg = f"No subaccount found with address {address} and subaccountNumber {n}"
            return web.json_response({"errors": [{"msg": msg}]}, status=404)
        return web.json_response({"subaccount": self.subaccount_body(address, n)})

    async def _candles(self, request: web.Request) -> web.Response:
        """GET /v4/candles/perpetualMarkets/{ticker}?resolution=1HOUR&limit=N: newest first, toISO inclusive."""
        self.candle_queries.append(dict(request.query))
        if self.fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if (bad := self._fault()) is not None:
            return bad
        ticker = request.match_info["ticker"]
        limit = int(request.query.get("limit", "100"))
        rows = self.candles.get(ticker, [])
        if "toISO" in request.query:
            to = datetime.fromisoformat(request.query["toISO"].replace("Z", "+00:00")).timestamp()
            rows = [r for r in rows if r[0] <= to]
        served = []
        for t, close in list(reversed(rows))[:limit]:
            started = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            served.append(
                {
                    "startedAt": started,
                    "ticker": ticker,
                    "resolution": request.query.get("resolution"),
                    "low": close,
                    "high": close,
                    "open": close,
                    "close": close,
                    "baseTokenVolume": "0",
                    "usdVolume": "0",
                    "trades": 0,
                    "startingOpenInterest": "0",
                    "id": f"{ticker}-{t}",
                }
            )
        if self.fault == "candles_garbage" and served:
            served[0]["close"] = "NaN"
        elif self.fault == "candles_unordered" and len(served) > 1:
            served[0], served[1] = served[1], served[0]
        elif self.fault == "candles_oversize":
            return web.json_response({"candles": served, "pad": "x" * 2_000_000})
        return web.json_response({"candles": served})

    def routes(self, app: web.Application) -> None:
        """The routes this stand-in serves."""
        app.router.add_get("/v4/candles/perpetualMarkets/{ticker}", self._candles)
        app.router.add_get("/v4/height", self._height)
        app.router.add_get("/v4/perpetualMarkets", self._markets)
        app.router.add_get("/v4/addresses/{address}/subaccountNumber/{n}", self._subaccount)
