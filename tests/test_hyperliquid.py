"""Hyperliquid adapter against a real local info-API stand-in: liquidation prices worked by hand, verdicts, faults."""

from __future__ import annotations

import asyncio
import re
import time
from fractions import Fraction
from typing import Any

import aiohttp
import pytest

from tests.hyperliquid_server import HyperliquidStandIn
from watcher.adapters.base import Account, ReadError
from watcher.adapters.hyperliquid import HyperliquidSnapshot, fetch_state, positions_from
from watcher.model import WAD, PerpLeg, Position
from watcher.risk import perp_top_ups

CROSS, ISO, TIERED = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40
ACCOUNTS = [Account(CROSS, "cross-btc"), Account(ISO, "iso-eth"), Account(TIERED, "tiered-btc")]
TOL = Fraction(1, 10**6)  # $0.000001: details are rounded to 8 places, our solution itself is exact

# BTC uses a Hyperliquid-shaped table: 50x (1%) to $500k, 20x (2.5%, deduction 7,500) to $2M, 10x (5%, 57,500) above.
# ETH uses a one-tier 50x table (1%).
META = {
    "universe": [
        {"name": "BTC", "szDecimals": 5, "maxLeverage": 50, "marginTableId": 56, "onlyIsolated": False},
        {"name": "ETH", "szDecimals": 4, "maxLeverage": 50, "marginTableId": 50, "onlyIsolated": False},
    ],
    "marginTables": [
        [50, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 50}]}],
        [
            56,
            {
                "description": "tiered 50x",
                "marginTiers": [
                    {"lowerBound": "0.0", "maxLeverage": 50},
                    {"lowerBound": "500000.0", "maxLeverage": 20},
                    {"lowerBound": "2000000.0", "maxLeverage": 10},
                ],
            },
        ],
    ],
}

# Cross BTC long, 1 BTC from 100,000, account value 15,800 at mark 95,000 (tier 0, 1%). By hand:
#   AV + 1*(p - 95,000) = 0.01 * p  ->  0.99 p = 95,000 - 15,800 = 79,200  ->  p = 80,000.
CROSS_LIQ = Fraction(80_000)
# Isolated ETH short, 10 ETH from 3,000 with isolated margin 3,330 (rawUsd = 3,330 + 10*3,000 = 33,330), mark 3,100.
#   3,330 - 10*(p - 3,000) = 0.01 * 10 * p  ->  10.1 p = 33,330  ->  p = 3,300.
ISO_LIQ = Fraction(3_300)
ISO_RAW = Fraction(33_330)
# Tier crossing: 40 BTC long from 52,000, account value 277,500 at BTC 51,000 (notional 2.04M: tier 2, 5%).
#   In tier 1 (2.5%, deduction 7,500): 277,500 + 40(p - 51,000) = 40p/40 - 7,500  ->  39p = 1,755,000 -> p = 45,000,
#   notional 1.8M is inside tier 1 [500k, 2M). Tier 2 gives 38p = 1,705,000 (p ~ 44,868, notional 1.79M: not tier 2)
#   and tier 0 gives 39.6p = 1,762,500 (notional ~1.78M: not tier 0), so 45,000 is the only consistent answer.
TIERED_LIQ = Fraction(45_000)


def _num(x: Fraction) -> str:
    """A Fraction with a finite decimal expansion as the API's decimal string."""
    whole, rest = divmod(x, 1)
    if rest == 0:
        return f"{whole}.0"
    digits = ""
    while rest:
        rest *= 10
        d, rest = divmod(rest, 1)
        digits += str(d)
    return f"{whole}.{digits}"


def _position(coin: str, szi: Fraction, entry: Fraction, mark: Fraction, liq: Fraction, lev: dict[str, Any]) -> Any:
    """One assetPositions entry in the documented shape."""
    upnl = szi * (mark - entry)
    return {
        "type": "oneWay",
        "position": {
            "coin": coin,
            "szi": _num(szi),
            "entryPx": _num(entry),
            "positionValue": _num(abs(szi) * mark),
            "unrealizedPnl": _num(upnl),
            "leverage": lev,
            "liquidationPx": _num(liq),
            "marginUsed": "0.0",
            "maxLeverage": 50,
        },
    }


def _state(total: Fraction, cross: Fraction, positions: list[Any]) -> dict[str, Any]:
    """A clearinghouseState answer."""
    summary = {"accountValue": _num(total), "totalNtlPos": "0.0", "totalRawUsd": "0.0", "totalMarginUsed": "0.0"}
    return {
        "marginSummary": summary,
        "crossMarginSummary": dict(summary, accountValue=_num(cross)),
        "crossMaintenanceMarginUsed": "0.0",
        "withdrawable": "0.0",
        "assetPositions": positions,
    }


def world(btc: Fraction, eth: Fraction) -> tuple[dict[str, str], dict[str, Any]]:
    """Marks and states with account values moved by PnL from the worked marks (BTC 95,000 / 51,000; ETH 3,100)."""
    cross_av = 15_800 + (btc - 95_000)
    cross_lev = {"type": "cross", "value": 20}
    a = _state(cross_av, cross_av, [_position("BTC", Fraction(1), Fraction(100_000), btc, CROSS_LIQ, cross_lev)])
    iso_equity = ISO_RAW - 10 * eth
    iso_lev = {"type": "isolated", "value": 10, "rawUsd": _num(ISO_RAW)}
    b = _state(
        500 + iso_equity, Fraction(500), [_position("ETH", Fraction(-10), Fraction(3_000), eth, ISO_LIQ, iso_lev)]
    )
    # the tiered account trades the same BTC market: its account value moves by PnL from its worked mark of 51,000
    tiered_mark = btc
    tiered_av = 277_500 + 40 * (tiered_mark - 51_000)
    c = _state(
        tiered_av, tiered_av, [_position("BTC", Fraction(40), Fraction(52_000), tiered_mark, TIERED_LIQ, cross_lev)]
    )
    return {"BTC": _num(btc), "ETH": _num(eth)}, {CROSS: a, ISO: b, TIERED: c}


async def _read(server: HyperliquidStandIn, users: list[str]) -> HyperliquidSnapshot:
    """One fetch through a real HTTP client."""
    async with aiohttp.ClientSession() as session:
        return await fetch_state(session, server.url, users, timeout=5)


def read(btc: Fraction, eth: Fraction, book_mids: dict[str, str] | None = None) -> dict[str, Position]:
    """Serve the world at these marks (order-book mids `book_mids` if given, else the marks) and read every account."""
    mids, states = world(btc, eth)

    async def scenario() -> HyperliquidSnapshot:
        async with HyperliquidStandIn(META, mids, states, book_mids) as server:
            return await _read(server, [a.address for a in ACCOUNTS])

    snap = asyncio.run(scenario())
    return {p.account: p for p in positions_from(snap, ACCOUNTS)}


def _row(p: Position) -> PerpLeg:
    """The single perp leg of an account."""
    (leg,) = p.perps
    return leg


def test_reference_reading_matches_hand_liquidation_prices_and_tiers() -> None:
    got = read(Fraction(95_000), Fraction(3_100))
    for acct, liq in ((CROSS, CROSS_LIQ), (ISO, ISO_LIQ), (TIERED, TIERED_LIQ)):
        p = got[acct]
        assert (p.protocol, p.chain, p.base_unit) == ("hyperliquid", "hyperliquid", 10**6)
        leg = _row(p)
        assert leg.liquidation_price is not None and leg.venue_liquidation_price is not None
        assert abs(leg.liquidation_price - liq) <= TOL
        assert abs(leg.venue_liquidation_price - liq) <= TOL
        assert not p.liquidatable
    # cross BTC: health = 15,800 / 950 (1% of 95,000), tier 0
    assert got[CROSS].health == Fraction(15_800, 950) * WAD // 1
    assert (_row(got[CROSS]).tier, _row(got[CROSS]).side) == (0, "long")
    assert _row(got[CROSS]).requirement == 950 * 10**6 and got[CROSS].collateral[0].value == 15_800 * 10**6
    assert got[CROSS].cross_equity == 15_800 * 10**6 and _row(got[CROSS]).notional == 95_000 * 10**6
    # isolated ETH short: own ratio = equity 33,330 - 31,000 = 2,330 over 1% of 31,000 = 310
    assert _row(got[ISO]).details["health"] == Fraction(2_330, 310) * WAD // 1 == got[ISO].health
    assert _row(got[ISO]).side == "short" and _row(got[ISO]).margin_mode == "isolated"
    assert _row(got[ISO]).equity == 2_330 * 10**6 and got[ISO].cross_equity is None
    # tiered at BTC 95,000: AV = 277,500 + 40 * 44,000 = 2,037,500; notional 3.8M is tier 2 (5%), requirement
    # 3.8M * 5% - 57,500 = 132,500; its liquidation (45,000, notional 1.8M) is in tier 1
    assert (_row(got[TIERED]).tier, _row(got[TIERED]).liquidation_tier) == (2, 1)
    assert _row(got[TIERED]).rate == Fraction(1, 20)
    assert got[TIERED].health == Fraction(2_037_500, 132_500) * WAD // 1


@pytest.mark.parametrize(("dollar", "expect"), [(-1, True), (1, False)])
def test_cross_verdict_either_side_of_the_liquidation_price(dollar: int, expect: bool) -> None:
    # at 79,999: AV 799 < requirement 799.99; at 80,001: AV 801 > 800.01
    got = read(CROSS_LIQ + dollar, Fraction(3_100))
    assert got[CROSS].liquidatable is expect
    assert (got[CROSS].health < WAD) is expect
    assert _row(got[CROSS]).tier == 0


@pytest.mark.parametrize(("dollar", "expect"), [(-1, True), (1, False)])
def test_tiered_verdict_either_side_of_the_liquidation_price(dollar: int, expect: bool) -> None:
    # at 44,999: AV 277,500 - 40*6,001 = 37,460 < 44,999 - 7,500 = 37,499; at 45,001: 37,540 > 37,501
    got = read(TIERED_LIQ + dollar, Fraction(3_100))
    assert got[TIERED].liquidatable is expect
    assert _row(got[TIERED]).tier == 1  # 40 * ~45,000 = 1.8M: tier 1 now, tier 2 at the worked mark


@pytest.mark.parametrize(("dollar", "expect"), [(1, True), (-1, False)])
def test_isolated_short_verdict_either_side_of_the_liquidation_price(dollar: int, expect: bool) -> None:
    got = read(Fraction(95_000), ISO_LIQ + dollar)
    assert got[ISO].liquidatable is expect
    assert _row(got[ISO]).details["liquidatable"] is expect
    assert not got[CROSS].liquidatable


@pytest.mark.parametrize(("dollar", "book_btc", "expect"), [(-1, 70_000, True), (1, 90_000, False)])
def test_verdict_uses_the_mark_price_not_the_book_mid(dollar: int, book_btc: int, expect: bool) -> None:
    # Hyperliquid liquidates at the MARK price. Mark one dollar under the cross liquidation price (AV 799 <
    # 1% of 79,999 = 799.99) while the book mid sits at 70,000: a requirement at the mid (700) would read healthy.
    # One dollar over (AV 801 > 800.01) with the mid at 90,000: at the mid (900) it would read liquidatable.
    got = read(CROSS_LIQ + dollar, Fraction(3_100), {"BTC": _num(Fraction(book_btc)), "ETH": "3100.0"})
    leg = _row(got[CROSS])
    assert got[CROSS].liquidatable is expect and leg.mark_price == CROSS_LIQ + dollar
    assert leg.requirement == (CROSS_LIQ + dollar) * 10**4  # 1% of the mark notional, in micro-USD
    assert abs(leg.liquidation_price - CROSS_LIQ) <= TOL


def _fault(setup: Any) -> str:
    """Read with the server broken by `setup`; the ReadError message (a failing test if it returns positions)."""
    mids, states = world(Fraction(95_000), Fraction(3_100))

    async def scenario() -> str:
        async with HyperliquidStandIn(META, mids, states) as server:
            setup(server)
            try:
                snap = await _read(server, [a.address for a in ACCOUNTS])
            except ReadError as exc:
                return str(exc)
            positions_from(snap, ACCOUNTS)
            raise AssertionError("a broken answer produced positions")

    return asyncio.run(scenario())


def test_http_500_is_a_read_error() -> None:
    assert "HTTP 500" in _fault(lambda s: setattr(s, "fault", "http500"))


def test_malformed_json_is_a_read_error() -> None:
    assert "malformed JSON" in _fault(lambda s: setattr(s, "fault", "badjson"))


def test_unknown_coin_is_a_read_error() -> None:
    def setup(s: HyperliquidStandIn) -> None:
        s.states[CROSS]["assetPositions"][0]["position"]["coin"] = "DOGE"

    assert "unknown coin 'DOGE'" in _fault(setup)


def test_missing_field_is_a_read_error() -> None:
    def setup(s: HyperliquidStandIn) -> None:
        del s.states[ISO]["assetPositions"][0]["position"]["entryPx"]

    msg = _fault(setup)
    assert "entryPx" in msg and ISO in msg


def test_missing_isolated_raw_usd_is_a_read_error() -> None:
    def setup(s: HyperliquidStandIn) -> None:
        del s.states[ISO]["assetPositions"][0]["position"]["leverage"]["rawUsd"]

    assert "rawUsd" in _fault(setup)


def test_top_up_restores_the_target_on_the_cross_account() -> None:
    # at BTC 80,001: AV = 15,800 - 14,999 = 801, requirement 1% of 80,001 = 800.01; to reach health 1.5 the
    # account needs 1.5 * 800.01 = 1,200.015 of equity: add 399.015 USD (micro-USD integers below)
    got = read(CROSS_LIQ + 1, Fraction(3_100))
    (up,) = perp_top_ups(got[CROSS], 3 * WAD // 2)
    assert (up.scope, up.amount) == ("cross", 399_015_000)
    assert up.health_after == 3 * WAD // 2
    # one micro-dollar less falls short of the target
    assert (got[CROSS].cross_equity + up.amount - 1) * WAD // _row(got[CROSS]).requirement < 3 * WAD // 2
    assert perp_top_ups(got[ISO], 3 * WAD // 2) == ()  # the isolated short is far from its requirement


@pytest.mark.parametrize("fault", ["badutf8", "deepjson"])
def test_undecodable_or_too_deep_json_is_a_read_error(fault: str) -> None:
    # used to escape as UnicodeDecodeError / RecursionError instead of ReadError
    assert "malformed JSON" in _fault(lambda s: setattr(s, "fault", fault))


@pytest.mark.parametrize("lev", [0, -50])
def test_malformed_margin_table_is_a_read_error(lev: int) -> None:
    # 0 used to escape as ZeroDivisionError; -50 gave a negative requirement, so a healthy reading
    def setup(s: HyperliquidStandIn) -> None:
        s.meta = {
            **META,
            "marginTables": [
                [56, {"marginTiers": [{"lowerBound": "0.0", "maxLeverage": lev}]}],
                META["marginTables"][0],
            ],
        }

    assert "margin table 56" in _fault(setup)


def test_negative_size_decimals_is_a_read_error() -> None:
    # used to turn sizes into floats and escape as AttributeError
    def setup(s: HyperliquidStandIn) -> None:
        s.meta = {**META, "universe": [dict(META["universe"][0], szDecimals=-1), META["universe"][1]]}

    assert "szDecimals -1" in _fault(setup)


def test_missing_mark_is_a_read_error() -> None:
    def setup(s: HyperliquidStandIn) -> None:
        del s.mids["ETH"]

    assert "markPx" in _fault(setup)


def test_exponent_decimal_is_a_read_error_not_a_stall() -> None:
    # Fraction("1e9999999") takes seconds of CPU on the event loop; the API writes plain decimals only
    def setup(s: HyperliquidStandIn) -> None:
        s.mids["BTC"] = "1e9999999"

    assert "not a plain decimal" in _fault(setup)


def test_stale_clearinghouse_state_is_a_read_error() -> None:
    # clearinghouseState carries its time in ms: five minutes old (max 120 s) is stale, a second old is fine
    def stale(s: HyperliquidStandIn) -> None:
        s.states[CROSS]["time"] = int((time.time() - 300) * 1000)

    assert re.search(r"is 30\d s old \(max 120 s\): its state is stale", _fault(stale))
    mids, states = world(Fraction(95_000), Fraction(3_100))
    states[CROSS]["time"] = int((time.time() - 1) * 1000)

    async def fresh() -> HyperliquidSnapshot:
        async with HyperliquidStandIn(META, mids, states) as server:
            return await _read(server, [a.address for a in ACCOUNTS])

    assert len(positions_from(asyncio.run(fresh()), ACCOUNTS)) == 3


# The documented metaAndAssetCtxs shape: universe entries with only maxLeverage, no marginTableId, no marginTables.
META_DOCUMENTED = {
    "universe": [
        {"name": "BTC", "szDecimals": 5, "maxLeverage": 40},
        {"name": "ETH", "szDecimals": 4, "maxLeverage": 50},
    ]
}


@pytest.mark.parametrize(("btc", "expect"), [(Fraction(95_000), False), (Fraction(80_202), True)])
def test_documented_shape_without_margin_tables_is_one_tier_at_max_leverage(btc: Fraction, expect: bool) -> None:
    """BTC at 40x: maintenance 1/(2*40) = 1.25%. Cross 1 BTC long, account value 15,800 at mark 95,000; by hand:
    15,800 + (p - 95,000) = p / 80  ->  (79/80) p = 79,200  ->  p = 6,336,000 / 79 = 80,202.53..."""
    mids, states = world(btc, Fraction(3_100))

    async def scenario() -> HyperliquidSnapshot:
        async with HyperliquidStandIn(META_DOCUMENTED, mids, states) as server:
            return await _read(server, [CROSS, ISO])

    got = {p.account: p for p in positions_from(asyncio.run(scenario()), ACCOUNTS[:2])}
    leg = _row(got[CROSS])
    assert leg.liquidation_price == Fraction(6_336_000, 79)
    assert leg.rate == Fraction(1, 80) and leg.tier == 0
    av = 15_800 + (btc - 95_000)
    assert got[CROSS].health == av / (btc / 80) * WAD // 1
    assert got[CROSS].liquidatable is expect
    # ETH at 50x: 1%, the isolated short's liquidation as in the tabled case
    assert abs(_row(got[ISO]).liquidation_price - ISO_LIQ) <= TOL
