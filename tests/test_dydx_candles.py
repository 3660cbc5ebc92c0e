"""dYdX v4 hourly candles from the indexer stand-in: paging, exact closes, and every fault a clear error, quickly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from fractions import Fraction

import aiohttp
import pytest

from tests.dydx_server import DydxIndexerStandIn, num
from tests.loopback import free_port
from tests.test_dydx_v4 import ACCOUNTS, SUBS, _markets, _subaccounts
from watcher.adapters.base import ReadError
from watcher.adapters.dydx_v4 import DydxV4Reader
from watcher.adapters.dydx_v4.candles import MAX_CANDLES, hourly_closes

HOUR = 3600
END = 1_764_000_000 // HOUR * HOUR  #: the newest candle's start


def _closes(n: int) -> list[tuple[int, str]]:
    """n hourly candles ending at END, closes 3000 + i/4 as the indexer's decimal strings."""
    return [(END - (n - 1 - i) * HOUR, num(Fraction(12000 + i, 4))) for i in range(n)]


def _fetch(
    setup: Callable[[DydxIndexerStandIn], None], count: int, timeout: float = 5.0, max_bytes: int = 8_000_000
) -> tuple[list[tuple[int, Fraction]], DydxIndexerStandIn]:
    async def scenario() -> tuple[list[tuple[int, Fraction]], DydxIndexerStandIn]:
        async with DydxIndexerStandIn(_markets(), _subaccounts()) as server:
            setup(server)
            async with aiohttp.ClientSession() as session:
                got = await hourly_closes(session, server.url, "ETH-USD", count, timeout=timeout, max_bytes=max_bytes)
                return got, server

    return asyncio.run(scenario())


def _with(n: int, fault: str | None = None) -> Callable[[DydxIndexerStandIn], None]:
    def setup(s: DydxIndexerStandIn) -> None:
        s.candles["ETH-USD"] = _closes(n)
        s.fault = fault

    return setup


def test_250_hours_come_in_three_pages_oldest_first_and_exact() -> None:
    got, server = _fetch(_with(300), 250)
    expect = [(t, Fraction(c)) for t, c in _closes(300)[-250:]]
    assert got == expect and got[-1][0] == END and got[0][0] == END - 249 * HOUR
    assert all(isinstance(c, Fraction) for _, c in got)
    # 100, then 100 more + the inclusive toISO boundary, then the last 50 + 1
    # pages of at most 100: the second repeats the inclusive toISO boundary (99 new), the third asks 51 + 1
    assert [q["limit"] for q in server.candle_queries] == ["100", "100", "52"]
    assert [q.get("toISO") for q in server.candle_queries][1:] == [
        time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(END - 99 * HOUR)),
        time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(END - 198 * HOUR)),
    ]
    assert {q["resolution"] for q in server.candle_queries} == {"1HOUR"}


def test_a_young_market_gives_what_it_has_and_one_is_the_latest() -> None:
    got, server = _fetch(_with(30), 100)
    assert len(got) == 30 and len(server.candle_queries) == 1
    got, _ = _fetch(_with(30), 1)
    assert got == [(END, Fraction(_closes(30)[-1][1]))]
    got, _ = _fetch(_with(0), 10)
    assert got == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("candles_garbage", "candles[0]: field 'close' is not a plain decimal: 'NaN'"),
        ("candles_unordered", "startedAt not older than the candle before it"),
        ("http500", "HTTP 500"),
        ("badjson", "malformed JSON"),
        ("candles_oversize", "the answer passed 1,000,000 bytes"),
    ],
)
def test_a_bad_answer_is_a_read_error_naming_it(fault: str, message: str) -> None:
    with pytest.raises(ReadError, match="candles ETH-USD") as info:
        _fetch(_with(50, fault), 50, max_bytes=1_000_000)
    assert message in str(info.value), info.value


def test_a_slow_or_absent_indexer_fails_quickly() -> None:
    t0 = time.monotonic()
    with pytest.raises(ReadError, match=r"candles ETH-USD: no whole answer within 0.3 s \(timeout\)"):
        _fetch(_with(50, "slow"), 50, timeout=0.3)
    assert time.monotonic() - t0 < 3

    async def down() -> None:
        async with aiohttp.ClientSession() as session:
            await hourly_closes(session, f"http://127.0.0.1:{free_port()}", "ETH-USD", 10, timeout=2)

    t0 = time.monotonic()
    with pytest.raises(ReadError, match="candles ETH-USD: ClientConnectorError"):
        asyncio.run(down())
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize(
    ("ticker", "count", "message"),
    [
        ("eth-usd", 10, "dYdX ticker 'eth-usd': expected BASE-QUOTE in capitals"),
        ("ETH-USD/../x", 10, "dYdX ticker 'ETH-USD/../x'"),
        ("ETH-USD", 0, "candle count 0: expected an integer from 1 to"),
        ("ETH-USD", MAX_CANDLES + 1, f"candle count {MAX_CANDLES + 1}"),
    ],
)
def test_bad_arguments_are_value_errors_before_any_request(ticker: str, count: int, message: str) -> None:
    async def call() -> None:
        async with aiohttp.ClientSession() as session:
            await hourly_closes(session, "http://127.0.0.1:9", ticker, count)

    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        asyncio.run(call())


def test_the_readers_own_base_url_and_timeout_are_used() -> None:
    async def scenario() -> tuple[list[tuple[int, Fraction]], str]:
        async with DydxIndexerStandIn(_markets(), _subaccounts()) as server:
            server.candles["ETH-USD"] = _closes(5)
            reader = DydxV4Reader("dydx", server.url + "/", ACCOUNTS, SUBS, timeout=0.3)
            async with aiohttp.ClientSession() as session:
                got = await reader.hourly_closes(session, "ETH-USD", 3)
                server.fault = "slow"
                try:
                    await reader.hourly_closes(session, "ETH-USD", 3)
                except ReadError as exc:
                    return got, str(exc)
                return got, ""

    got, err = asyncio.run(scenario())
    assert [t for t, _ in got] == [END - 2 * HOUR, END - HOUR, END]
    assert "no whole answer within 0.3 s" in err
