"""Hyperliquid's candleSnapshot over the info API: (time, close) pairs of one coin, every odd answer a ReadError."""

from __future__ import annotations

from fractions import Fraction

import aiohttp

from watcher.adapters.base import ReadError
from watcher.adapters.http import DEFAULT_MAX_BYTES, request_json
from watcher.adapters.hyperliquid.parse import PROTOCOL, _dec, _field

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}  #: the ones we ask for
MAX_CANDLES = 5000  #: the venue serves at most this many candles per request


async def fetch_candles(
    session: aiohttp.ClientSession,
    base_url: str,
    coin: str,
    start_ms: int,
    end_ms: int,
    *,
    interval: str = "1h",
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[tuple[int, Fraction]]:
    """Closes of `coin`'s candles in [start_ms, end_ms], oldest first, as (unix seconds of the close, close USD).

    One request under the venue's deadline and answer cap (the adapter's HTTP client). More candles than the window
    holds, candles out of order, outside the window or of another coin, and any non-decimal close are a ReadError:
    a history the venue garbled must give no probability, never a wrong one. The candle still open is kept, at `end_ms`.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
    step = INTERVALS[interval] * 1000
    body = {
        "type": "candleSnapshot",
        "req": {"coin": coin, "interval": interval, "startTime": start_ms, "endTime": end_ms},
    }
    url = base_url.rstrip("/") + "/info"
    answer = await request_json(
        session, "POST", url, venue=PROTOCOL, what="candleSnapshot", timeout=timeout, body=body, max_bytes=max_bytes
    )
    where = f"hyperliquid: candleSnapshot({coin})"
    if not isinstance(answer, list):
        raise ReadError(f"{where} is not a list of candles")
    most = min(MAX_CANDLES, (end_ms - start_ms) // step + 2)  # the window's candles, the open one and one it cuts
    if len(answer) > most:
        raise ReadError(f"{where}: {len(answer)} candles, more than the {most} the window holds")
    out: list[tuple[int, Fraction]] = []
    for i, candle in enumerate(answer):
        at = f"candleSnapshot({coin})[{i}]"
        close_ms = _field(candle, "T", at)
        if not isinstance(close_ms, int) or isinstance(close_ms, bool):
            raise ReadError(f"hyperliquid: {at}: field 'T' is not milliseconds: {str(close_ms)[:40]!r}")
        if candle.get("s", coin) != coin:
            raise ReadError(f"hyperliquid: {at}: a candle of {str(candle.get('s'))[:20]!r}, not {coin!r}")
        if not start_ms <= close_ms <= end_ms + step:
            raise ReadError(f"hyperliquid: {at}: closes at {close_ms} ms, outside the window asked for")
        close = _dec(candle, "c", at)
        if close <= 0:
            raise ReadError(f"hyperliquid: {at}: non-positive close {close}")
        when = -(-min(close_ms, end_ms) // 1000)  # T is the last millisecond of the candle: its close, in seconds
        if out and when <= out[-1][0]:
            raise ReadError(f"hyperliquid: {at}: candles are not in time order")
        out.append((when, close))
    return out
