"""The Hyperliquid account simulator against the local info-API stand-in: the adapter's own reading is the truth.

Every shocked verdict is checked by serving the world at the shocked mark (account values moved by PnL, as the venue
moves them) and reading it again through the adapter: health and verdict must be equal to the wei of WAD.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import pytest

from tests.hyperliquid_server import HyperliquidStandIn
from tests.test_hyperliquid import (
    ACCOUNTS,
    CROSS,
    CROSS_LIQ,
    ISO,
    ISO_LIQ,
    ISO_RAW,
    META,
    META_DOCUMENTED,
    TIERED,
    TIERED_LIQ,
    _num,
    _position,
    _read,
    _state,
    world,
)
from watcher.adapters.base import Account, ReadError
from watcher.adapters.hyperliquid import HyperliquidSimulator, positions_from
from watcher.forecast import forecast
from watcher.ladder import price_ladder
from watcher.model import WAD, Position
from watcher.risk import Thresholds
from watcher.whatif import At, parse_shock, simulate

TH = Thresholds(125 * WAD // 100, 110 * WAD // 100, 150 * WAD // 100)
USD = 10**6
HOUR = 3600
#: one account with both margin modes: 1 BTC cross long (account value 20,000 at 95,000) and the 10 ETH isolated short
MIXED = "0x" + "d" * 40
ALL = [*ACCOUNTS, Account(MIXED, "mixed")]


def mixed_world(btc: Fraction, eth: Fraction, extra_cross: Fraction = Fraction(0)) -> tuple[dict[str, str], Any]:
    """world() plus the mixed account; `extra_cross` USD deposited into every cross account value."""
    mids, states = world(btc, eth)
    cross_av = 20_000 + (btc - 95_000)
    iso_equity = ISO_RAW - 10 * eth
    cross_lev = {"type": "cross", "value": 20}
    iso_lev = {"type": "isolated", "value": 10, "rawUsd": _num(ISO_RAW)}
    states[MIXED] = _state(
        cross_av + iso_equity,
        cross_av,
        [
            _position("BTC", Fraction(1), Fraction(100_000), btc, Fraction(1), cross_lev),
            _position("ETH", Fraction(-10), Fraction(3_000), eth, ISO_LIQ, iso_lev),
        ],
    )
    if extra_cross:
        for st in states.values():
            for summary in ("marginSummary", "crossMarginSummary"):
                st[summary]["accountValue"] = _num(Fraction(st[summary]["accountValue"]) + extra_cross)
    return mids, states


def read_all(
    btc: Fraction,
    eth: Fraction,
    meta: dict[str, Any] = META,
    extra_cross: Fraction = Fraction(0),
    funding: dict[str, str | None] | None = None,
) -> dict[str, Position]:
    """Serve the world (mixed account included; `funding` rates per coin) and read every account through the adapter."""
    mids, states = mixed_world(btc, eth, extra_cross)

    async def scenario() -> Any:
        async with HyperliquidStandIn(meta, mids, states) as server:
            server.funding.update(funding or {})
            return await _read(server, [a.address for a in ALL])

    return {p.account: p for p in positions_from(asyncio.run(scenario()), ALL)}


MARKS = [
    (Fraction(95_000), Fraction(3_100)),
    (CROSS_LIQ - 1, Fraction(3_100)),
    (CROSS_LIQ + 1, Fraction(3_100)),
    (TIERED_LIQ - 1, Fraction(3_100)),
    (TIERED_LIQ + 1, Fraction(3_100)),
    (Fraction(95_000), ISO_LIQ + 1),
    (Fraction(95_000), ISO_LIQ - 1),
    (Fraction("95000.5"), Fraction("3100.25")),
]


@pytest.mark.parametrize("meta", [META, META_DOCUMENTED], ids=["tabled", "documented"])
@pytest.mark.parametrize(("btc", "eth"), MARKS)
def test_the_simulator_at_the_read_marks_is_the_adapters_reading(
    btc: Fraction, eth: Fraction, meta: dict[str, Any]
) -> None:
    got = read_all(btc, eth, meta)
    assert len(got) == 4
    for p in got.values():
        sim = p.simulator
        assert isinstance(sim, HyperliquidSimulator)
        assert (sim.health(), sim.liquidatable()) == (p.health, p.liquidatable), p.label
        # a mark replaced by itself changes nothing
        for coin, price in zip([m.symbol for m in sim.markets], sim.prices, strict=True):
            if Fraction(price, USD) in (btc, eth):
                assert sim.with_price(coin, price).health() == p.health


SHOCKS = [("BTC", b) for b in (-500, -1500, -1600, -2000, -5000, -5500, 1000)] + [
    ("ETH", b) for b in (-1000, 500, 700, 1000)
]


@pytest.mark.parametrize(("coin", "bps"), SHOCKS)
def test_shocked_verdicts_equal_the_venue_read_at_the_shocked_mark(coin: str, bps: int) -> None:
    btc, eth = Fraction(95_000), Fraction(3_100)
    positions = list(read_all(btc, eth).values())
    outcomes = {o.position.account: o for o in simulate(positions, [parse_shock(f"{coin}={bps / 100:+g}%")], None, TH)}
    moved = {m.after for o in outcomes.values() for m in o.moved}
    assert len(moved) == 1  # one shocked mark, the same in every account
    after = Fraction(moved.pop(), USD)
    truth = read_all(after if coin == "BTC" else btc, after if coin == "ETH" else eth)
    for acct, o in outcomes.items():
        holds = any(leg.market == coin for leg in o.position.perps)
        assert o.status == ("shocked" if holds else "unaffected"), (acct, o.notes)
        assert (o.health_after, o.liquidatable_after) == (truth[acct].health, truth[acct].liquidatable), acct


def test_the_shocks_split_the_accounts_and_the_top_up_restores_the_target_on_the_venue() -> None:
    positions = list(read_all(Fraction(95_000), Fraction(3_100)).values())
    [o] = [o for o in simulate(positions, [parse_shock("BTC=-16%")], None, TH) if o.position.account == CROSS]
    assert o.liquidatable_after and o.level_after.word == "liquidatable"
    [up] = o.advice_after.top_ups
    assert (up.kind, up.symbol) == ("supply", "USD") and up.health_after >= TH.target
    # deposit that much on the venue (the cross account value grows by it): the venue's reading reaches the target,
    # one micro-dollar less does not
    shocked = Fraction(95_000 * 84, 100)
    assert read_all(shocked, Fraction(3_100), extra_cross=Fraction(up.amount, USD))[CROSS].health >= TH.target
    assert read_all(shocked, Fraction(3_100), extra_cross=Fraction(up.amount - 1, USD))[CROSS].health < TH.target
    # shocks on either side split the accounts: the comparison above is not vacuous
    both = simulate(positions, [parse_shock("BTC=-16%"), parse_shock("ETH=+7%")], None, TH)
    assert {o.liquidatable_after for o in both} == {True, False}


def test_a_shock_on_usd_is_named_as_not_applied() -> None:
    positions = list(read_all(Fraction(95_000), Fraction(3_100)).values())
    outcomes = simulate(positions, [parse_shock("USD=-5%")], None, TH)
    assert {o.status for o in outcomes} == {"not shockable"}
    assert all("does not price it by an oracle" in o.notes[0] for o in outcomes)


def test_the_ladder_moves_against_each_position_and_each_rung_is_the_venues_reading() -> None:
    btc, eth = Fraction(95_000), Fraction(3_100)
    got = read_all(btc, eth)
    expect = {CROSS: ("BTC", "down"), ISO: ("ETH", "up"), TIERED: ("BTC", "down"), MIXED: ("BTC", "down")}
    for acct, (coin, direction) in expect.items():
        ladder = price_ladder(got[acct])
        assert ladder is not None and (ladder["symbol"], ladder["direction"]) == (coin, direction), ladder
        rungs = ladder["rungs"]
        assert rungs[-1]["liquidatable"] and not any(r["liquidatable"] for r in rungs[:-1])
        for rung in rungs:
            at = Fraction(rung["price_raw"], USD)
            truth = read_all(at if coin == "BTC" else btc, at if coin == "ETH" else eth)[acct]
            assert (rung["health_raw"], rung["liquidatable"]) == (truth.health, truth.liquidatable)
    # cross-btc: liquidation at 80,000 is -15.8 %: the -20 % rung is the first liquidatable one
    assert [r["move_pct"] for r in price_ladder(got[CROSS])["rungs"]] == [-5, -10, -15, -20]
    # iso-eth: liquidation at 3,300 is +6.5 %: +10 % is the first
    assert [r["move_pct"] for r in price_ladder(got[ISO])["rungs"]] == [5, 10]
    assert price_ladder(read_all(CROSS_LIQ - 1, eth)[CROSS]) is None  # already liquidatable: no ladder


def _stepped(sim: HyperliquidSimulator, start: int, hours: int) -> int | None:
    """The first hour boundary at which the replay says liquidatable, walking hour by hour."""
    for k in range(1, hours + 1):
        t = (start // HOUR + k) * HOUR
        if sim.at_time(t).liquidatable():
            return t
    return None


@pytest.mark.parametrize(("btc_rate", "eth_rate"), [("0.0001", "0.0001"), ("-0.00005", "-0.0002"), ("0.00004", "0.0")])
def test_the_funding_hour_is_the_first_liquidatable_hour_of_the_replay(btc_rate: str, eth_rate: str) -> None:
    got = read_all(Fraction(95_000), Fraction(3_100), funding={"BTC": btc_rate, "ETH": eth_rate})
    seen = []
    for p in got.values():
        f = forecast(p, horizon=10_000 * HOUR)
        assert f.modelled and "funding" in f.basis
        stepped = _stepped(p.simulator, p.block.timestamp, 10_000)
        assert f.at == stepped, (p.label, f.at, stepped)
        seen.append(f.at)
        if f.at is not None:  # within a second of the hour: safe a second before it, liquidatable on it
            assert not p.simulator.at_time(f.at - 1).liquidatable() and p.simulator.at_time(f.at).liquidatable()
    assert any(t is None for t in seen) and any(t is not None for t in seen)


def test_funding_in_the_accounts_favour_never_liquidates_and_the_horizon_bounds_the_answer() -> None:
    # shorts receive at a positive rate: the ETH short's equity only grows
    got = read_all(Fraction(95_000), Fraction(3_100), funding={"BTC": "0.0001", "ETH": "0.001"})
    assert forecast(got[ISO]).at is None
    # cross-btc at 9.5 USD an hour reaches its requirement in the 1,564th hour: a shorter horizon sees none
    start = got[CROSS].block.timestamp
    assert forecast(got[CROSS]).at == (start // HOUR + 1_564) * HOUR
    assert forecast(got[CROSS], horizon=1_000 * HOUR).at is None
    # an already liquidatable account is liquidatable now
    late = read_all(CROSS_LIQ - 1, Fraction(3_100), funding={"BTC": "0.0001"})[CROSS]
    assert forecast(late).at == late.block.timestamp


def test_a_missing_funding_rate_gives_no_time_and_says_which_coin() -> None:
    got = read_all(Fraction(95_000), Fraction(3_100), funding={"BTC": None, "ETH": "0.0001"})
    f = forecast(got[CROSS])
    assert not f.modelled and f.at is None and "no funding rate for BTC" in f.basis
    assert forecast(got[ISO]).modelled  # ETH's rate is served
    assert "no funding rate for BTC" in forecast(got[MIXED]).basis


@pytest.mark.parametrize("bad", ["1e-4", "fast", "0.0001.2"])
def test_a_malformed_funding_rate_is_a_read_error_naming_it(bad: str) -> None:
    with pytest.raises(ReadError, match=r"assetCtxs\[BTC\]: field 'funding' is not a plain decimal"):
        read_all(Fraction(95_000), Fraction(3_100), funding={"BTC": bad})


def test_a_shock_at_a_later_time_charges_the_funding_hours_in_between() -> None:
    got = read_all(Fraction(95_000), Fraction(3_100), funding={"BTC": "0.0001"})
    p = got[CROSS]
    [o] = [o for o in simulate([p], [parse_shock("BTC=-10%")], At(ahead=30 * 86_400), TH)]
    hours = (p.block.timestamp + 30 * 86_400) // HOUR - p.block.timestamp // HOUR
    # 720 hours at 9.5 USD an hour (on the read oracle price), then BTC at 85,500: the venue's reading of that state
    truth = read_all(Fraction(85_500), Fraction(3_100), extra_cross=-hours * Fraction(95, 10))[CROSS]
    assert hours in (720, 721) and o.at == p.block.timestamp + 30 * 86_400
    assert (o.health_after, o.liquidatable_after) == (truth.health, truth.liquidatable)
