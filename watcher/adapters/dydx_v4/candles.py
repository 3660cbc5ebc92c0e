"""Hourly candle history of a dYdX v4 market from the indexer: (start time, close) pairs, exact, oldest first.

GET /v4/candles/perpetualMarkets/{ticker}?resolution=1HOUR&limit=N[&toISO=T] serves candles newest first, at most
`PAGE` a request; older ones are paged back with toISO (inclusive, so the boundary candle is dropped once). Closes
are the oracle-independent trade closes the indexer aggregates, parsed with Fraction (never float); every candle is
checked (ticker, resolution, an hour-aligned start, a positive close, strictly older down the page), and any
transport, size, time or shape problem is a ReadError naming the request.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import aiohttp

from watcher.adapters.base import ReadError
from watcher.adapters.dydx_v4.parse import PROTOCOL, _dec, _field
from watcher.adapters.http import DEFAULT_MAX_BYTES, request_json

HOUR = 3600
PAGE = 100  #: candles per request (the indexer's own limit for this endpoint)
MAX_CANDLES = 2_000  #: about twelve weeks of hours: more is a typo, not a history
_TICKER = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,10}$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def validate_ticker(ticker: str) -> str:
    """The ticker if it has the indexer's shape (BASE-QUOTE, upper case); ValueError naming it otherwise."""
    if not isinstance(ticker, str) or not _TICKER.match(ticker):
        raise ValueError(f"dYdX ticker {str(ticker)[:40]!r}: expected BASE-QUOTE in capitals, e.g. 'BTC-USD'")
    return ticker


def _started(raw: Any, where: str) -> int:
    text = _field(raw, "startedAt", where)
    if not isinstance(text, str) or not _ISO.match(text):
        raise ReadError(f"{PROTOCOL}: {where}: startedAt {str(text)[:40]!r} is not an ISO-8601 UTC time")
    t = int(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp())
    if t % HOUR:
        raise ReadError(f"{PROTOCOL}: {where}: startedAt {text} is not on the hour")
    return t


def parse_candles(ticker: str, body: Any, where: str) -> list[tuple[int, Fraction]]:
    """(start, close) per candle of one answer, newest first as served; ReadError on anything malformed."""
    rows = _field(body, "candles", where)
    if not isinstance(rows, list):
        raise ReadError(f"{PROTOCOL}: {where}: candles is not a list")
    out: list[tuple[int, Fraction]] = []
    for i, raw in enumerate(rows):
        at = f"{where}: candles[{i}]"
        if _field(raw, "ticker", at) != ticker:
            raise ReadError(f"{PROTOCOL}: {at}: ticker {str(raw['ticker'])[:40]!r}, asked for {ticker!r}")
        if _field(raw, "resolution", at) != "1HOUR":
            raise ReadError(f"{PROTOCOL}: {at}: resolution {str(raw['resolution'])[:20]!r}, asked for '1HOUR'")
        t, close = _started(raw, at), _dec(raw, "close", at)
        if close <= 0:
            raise ReadError(f"{PROTOCOL}: {at}: non-positive close {close}")
        if out and t >= out[-1][0]:
            raise ReadError(f"{PROTOCOL}: {at}: startedAt not older than the candle before it (newest first)")
        out.append((t, close))
    return out


async def hourly_closes(
    session: aiohttp.ClientSession,
    base_url: str,
    ticker: str,
    count: int = PAGE,
    *,
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[tuple[int, Fraction]]:
    """The last `count` hourly (start unix seconds, close USDC) of `ticker`, oldest first (fewer if it is younger).

    `timeout` bounds each request; ValueError for a bad ticker or count, ReadError for a bad or missing answer.
    """
    validate_ticker(ticker)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CANDLES:
        raise ValueError(f"candle count {count!r}: expected an integer from 1 to {MAX_CANDLES}")
    url = f"{base_url.rstrip('/')}/v4/candles/perpetualMarkets/{urllib.parse.quote(ticker)}"
    got: list[tuple[int, Fraction]] = []
    to_iso: str | None = None
    while len(got) < count:
        # one more than needed past the first page: toISO is inclusive, so its own candle comes back first
        want = min(PAGE, count - len(got) + (1 if to_iso else 0))
        query = {"resolution": "1HOUR", "limit": str(want)} | ({"toISO": to_iso} if to_iso else {})
        page_url = f"{url}?{urllib.parse.urlencode(query)}"
        body = await request_json(
            session, "GET", page_url, venue=PROTOCOL, what=f"candles {ticker}", timeout=timeout, max_bytes=max_bytes
        )
        page = parse_candles(ticker, body, f"candles {ticker}")
        if len(page) > want:
            raise ReadError(f"{PROTOCOL}: candles {ticker}: {len(page)} candles for a limit of {want}")
        if got and page and page[0][0] == got[-1][0]:
            page = page[1:]
        if got and page and page[0][0] >= got[-1][0]:
            raise ReadError(f"{PROTOCOL}: candles {ticker}: a page is not older than the one before it")
        got += page
        if len(page) < want - (1 if to_iso else 0) or not page:
            break  # the market's first candle reached
        to_iso = datetime.fromtimestamp(got[-1][0], UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return list(reversed(got[:count]))
