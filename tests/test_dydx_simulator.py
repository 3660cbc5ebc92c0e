"""The dYdX v4 subaccount simulator against the adapter reading the local indexer stand-in at the changed state.

The truth is the adapter's replay of the chain's rule on a fresh read: every shocked price, top-up, ladder rung and
funding hour the simulator computes is served by the stand-in (price moved, USDC changed) and read again, and the
health and verdict must be equal to the last unit.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest

from tests.dydx_server import DydxIndexerStandIn, num
from tests.test_dydx_v4 import BTC_LIQ, ETH_LIQ, SOL_LIQ, TRUMP_LIQ, UNIT, A, B, _by_key, _reference, _run
from watcher.adapters.dydx_v4 import DydxSubaccountSim
from watcher.forecast import forecast
from watcher.ladder import price_ladder
from watcher.model import WAD, Position
from watcher.risk import Thresholds
from watcher.whatif import At, ShockError, parse_shock, simulate

TH = Thresholds(125 * WAD // 100, 110 * WAD // 100, 150 * WAD // 100)
GRID = 10**8  #: simulator price units per USDC on the stand-in's markets (8 decimals)
HOUR = 3600
Setup = Callable[[DydxIndexerStandIn], None]
TICKERS = {"BTC": "BTC-USD", "ETH": "ETH-USD", "TRUMP": "TRUMP-USD", "SOL": "SOL-USD"}


def _sim(p: Position) -> DydxSubaccountSim:
    assert isinstance(p.simulator, DydxSubaccountSim)
    return p.simulator


def _reread(key: tuple[str, str], prices: dict[str, Fraction], usdc_delta: Fraction = Fraction(0)) -> Position:
    """The position read again from a stand-in serving these oracle prices and `usdc_delta` more USDC."""

    def setup(s: DydxIndexerStandIn) -> None:
        for ticker, price in prices.items():
            s.set_price(ticker, price)
        state = s.subaccounts[(key[0], int(key[1].removeprefix("sub")))]
        state["usdc"] = num(Fraction(state["usdc"]) + usdc_delta)

    positions, _, _ = _run(setup)
    return _by_key(positions)[key]


def test_health_and_verdict_equal_the_adapters_for_every_position() -> None:
    ref = _reference()
    assert len(ref) == 3
    for p in ref.values():
        sim = _sim(p)
        assert sim.health() == p.health and sim.liquidatable() == p.liquidatable, p.key
        assert sim.net_collateral() == p.details["net_collateral"]
        assert sim.maintenance() == p.details["maintenance_requirement"]


@pytest.mark.parametrize(
    "setup",
    [
        lambda s: setattr(s, "equity_offset", Fraction(5)),  # the indexer disagreeing: ours is used, and replayed
        lambda s: setattr(s, "lag", 60.0),
        lambda s: s.set_price("SOL-USD", SOL_LIQ),  # OI notional below the lower cap
        lambda s: s.set_price("BTC-USD", BTC_LIQ),  # liquidatable
    ],
)
def test_health_equals_the_adapters_in_the_adapter_tests_other_states(setup: Setup) -> None:
    positions, _, _ = _run(setup, subs={A: [0, 5, 128], B: [0]})
    assert len(positions) == 3
    for p in positions:
        assert (_sim(p).health(), _sim(p).liquidatable()) == (p.health, p.liquidatable), p.key


@pytest.mark.parametrize(
    ("key", "ticker", "price"),
    [
        ((A, "sub0"), "BTC-USD", BTC_LIQ),
        ((A, "sub0"), "BTC-USD", BTC_LIQ + UNIT),
        ((A, "sub0"), "ETH-USD", ETH_LIQ),
        ((A, "sub0"), "ETH-USD", ETH_LIQ - UNIT),
        ((A, "sub128"), "TRUMP-USD", TRUMP_LIQ),
        ((A, "sub128"), "TRUMP-USD", TRUMP_LIQ + UNIT),
        ((B, "sub0"), "SOL-USD", SOL_LIQ),  # below the open-interest lower cap: the IMF scaling changed, MMR not
        ((B, "sub0"), "SOL-USD", SOL_LIQ + UNIT),
    ],
)
def test_with_price_at_each_boundary_equals_a_read_there(key: tuple[str, str], ticker: str, price: Fraction) -> None:
    there = _reread(key, {ticker: price})
    moved = _sim(_reference()[key]).with_price(ticker, int(price * GRID))
    assert (moved.health(), moved.liquidatable()) == (there.health, there.liquidatable)
    assert _sim(there).health() == there.health  # and the simulator built from that read agrees with it too


SHOCKS = ["BTC=-20%", "BTC=-55%", "BTC=-61%", "BTC=+10%", "ETH=+50%", "ETH=+142%", "TRUMP=-5%", "TRUMP=-5.6%"]
SHOCKS += ["TRUMP=-10%", "SOL=-30%", "SOL=-37%", "SOL=-36.84%", "SOL=+20%"]


@pytest.mark.parametrize("text", SHOCKS)
def test_a_shock_equals_a_read_at_the_shocked_price(text: str) -> None:
    ref = _reference()
    shock = parse_shock(text)
    ticker = TICKERS[shock.target]
    for o in simulate(list(ref.values()), [shock], None, TH):
        p = o.position
        key = (p.account, p.details["market_id"])
        if not any(leg.market == ticker for leg in p.perps):
            assert o.status == "unaffected" and o.health_after == p.health
            continue
        [m] = o.moved
        assert (
            o.status == "shocked" and m.symbol == shock.target and m.after == m.before * (10_000 + shock.bps) // 10_000
        )
        there = _reread(key, {ticker: Fraction(m.after, GRID)})
        assert (o.health_after, o.liquidatable_after) == (there.health, there.liquidatable), (text, key)


def test_the_shocks_split_the_verdicts_and_each_top_up_restores_the_target_exactly() -> None:
    ref = _reference()
    seen, topped = set(), 0
    for text in ("TRUMP=-10%", "BTC=-61%", "SOL=-37%", "SOL=-20%"):
        shock = parse_shock(text)
        ticker = TICKERS[shock.target]
        for o in simulate(list(ref.values()), [shock], None, TH):
            if o.status != "shocked":
                continue
            seen.add(o.liquidatable_after)
            p, [m] = o.position, o.moved
            key = (p.account, p.details["market_id"])
            assert o.advice_after is not None and o.advice_after.repayments == ()
            if o.health_after is not None and o.health_after >= TH.target:
                assert o.advice_after.top_ups == ()
                continue
            [top] = o.advice_after.top_ups
            assert (top.kind, top.symbol, top.decimals) == ("supply", "USDC", 6)
            price = {ticker: Fraction(m.after, GRID)}
            after = _reread(key, price, Fraction(top.amount, 10**6))
            short = _reread(key, price, Fraction(top.amount - 1, 10**6))
            assert after.health == top.health_after and after.health is not None and after.health >= TH.target
            assert short.health is not None and short.health < TH.target, (text, key)  # one quantum less falls short
            topped += 1
    assert seen == {True, False} and topped >= 3


def test_usdc_is_not_priced_and_an_unknown_asset_is_a_clear_error() -> None:
    ref = list(_reference().values())
    outcomes = simulate(ref, [parse_shock("USDC=-10%")], None, TH)
    assert {o.status for o in outcomes} == {"not shockable"}
    assert all("USDC: dydx_v4 does not price it by an oracle" in o.notes[0] for o in outcomes)
    assert all(o.health_after == o.health_before for o in outcomes)
    with pytest.raises(ShockError, match="no position has an asset 'DOGE'"):
        simulate(ref, [parse_shock("DOGE=-10%")], None, TH)
    sim = _sim(ref[0])
    with pytest.raises(ValueError, match="USDC as collateral, not BTC"):
        sim.with_supply("BTC", 1)
    with pytest.raises(ValueError, match="no debt"):
        sim.with_repay("USDC", 1)


def _short_sol(s: DydxIndexerStandIn) -> None:
    s.subaccounts[(B, 0)] = {"usdc": "24000", "positions": {"SOL-USD": {"size": "-100", "entryPrice": "210"}}}


@pytest.mark.parametrize(
    ("setup", "key", "ticker", "direction"),
    [
        (None, (A, "sub0"), "BTC-USD", "down"),  # the largest of a cross account: BTC (30,000 against ETH's 12,000)
        (None, (A, "sub128"), "TRUMP-USD", "down"),
        (_short_sol, (B, "sub0"), "SOL-USD", "up"),  # a short's ladder steps its price up
    ],
)
def test_ladder_rungs_equal_reads_at_their_prices(
    setup: Setup | None, key: tuple[str, str], ticker: str, direction: str
) -> None:
    positions, _, _ = _run(setup)
    p = _by_key(positions)[key]
    ladder = price_ladder(p)
    assert ladder is not None and (ladder["asset"], ladder["direction"]) == (ticker.split("-")[0], direction)
    rungs = ladder["rungs"]
    assert rungs[-1]["liquidatable"] and not any(r["liquidatable"] for r in rungs[:-1])
    sign = -1 if direction == "down" else 1
    assert [r["move_pct"] for r in rungs] == [sign * 5 * k for k in range(1, len(rungs) + 1)]

    def at(price_raw: int) -> Position:
        def both(s: DydxIndexerStandIn) -> None:
            if setup is not None:
                setup(s)
            s.set_price(ticker, Fraction(price_raw, GRID))

        return _by_key(_run(both)[0])[key]

    for r in rungs:
        there = at(r["price_raw"])
        assert (r["health_raw"], r["liquidatable"]) == (there.health, there.liquidatable), r
    # the liquidation price lies between the last safe rung and the first liquidatable one
    [leg] = [x for x in p.perps if x.market == ticker]
    assert leg.liquidation_price is not None
    lp = int(leg.liquidation_price * GRID)
    before = rungs[-2]["price_raw"] if len(rungs) > 1 else ladder["price_raw"]
    assert min(before, rungs[-1]["price_raw"]) <= lp <= max(before, rungs[-1]["price_raw"])


def test_a_liquidatable_or_empty_subaccount_has_no_ladder() -> None:
    gone = _reread((A, "sub128"), {"TRUMP-USD": TRUMP_LIQ})
    assert gone.liquidatable and price_ladder(gone) is None

    def flat(s: DydxIndexerStandIn) -> None:
        s.subaccounts[(B, 0)] = {"usdc": "100", "positions": {}}

    empty = _by_key(_run(flat)[0])[(B, "sub0")]
    assert empty.perps == () and empty.health is None and price_ladder(empty) is None


# --- time to liquidation with hourly funding --------------------------------------------------------------------------


def _funded(rates: dict[str, str], extra_usdc: dict[tuple[str, int], Fraction] | None = None) -> Setup:
    def setup(s: DydxIndexerStandIn) -> None:
        for ticker, rate in rates.items():
            s.markets[ticker]["nextFundingRate"] = rate
        for k, delta in (extra_usdc or {}).items():
            s.subaccounts[k]["usdc"] = num(Fraction(s.subaccounts[k]["usdc"]) + delta)

    return setup


def test_the_forecast_hour_is_the_first_hour_a_read_with_that_funding_paid_is_liquidatable() -> None:
    # TRUMP long 1,000 at 10 with NC 1,500 and MMR 1,000: 0.15 %/h costs 15 USDC a tick, so tick 34 (NC 990) is the
    # first under the requirement and tick 33 (NC 1,005) is not.
    rate = "0.0015"
    p = _by_key(_run(_funded({"TRUMP-USD": rate}))[0])[(A, "sub128")]
    f = forecast(p)
    start = p.block.timestamp
    assert f.modelled and "hourly tick" in f.basis and f.at == (start // HOUR + 34) * HOUR
    assert f.interest_per_day == 24 * 15 * 10**6  # funding paid over the next day, in quantums
    sim = _sim(p)
    stepped = next(k for k in range(1, 100) if sim.at_time((start // HOUR + k) * HOUR).liquidatable())
    assert stepped == 34 and not sim.at_time(f.at - 1).liquidatable()
    for k, expect in ((33, False), (34, True)):
        paid = Fraction(1000 * 10) * Fraction(rate) * k
        there = _by_key(_run(_funded({"TRUMP-USD": rate}, {(A, 128): -paid}))[0])[(A, "sub128")]
        assert there.liquidatable is expect
        assert sim.at_time((start // HOUR + k) * HOUR).health() == there.health


def test_funding_across_a_cross_account_sums_and_matches_stepping() -> None:
    # sub0: long 0.5 BTC at 60,000 and short 4 ETH at 3,000; BTC pays 0.01 %/h (3 USDC), ETH shorts pay at -0.02 %/h
    # (2.4 USDC): 5.4 USDC a tick against a surplus of 18,720 - 1,260 = 17,460: tick 3,234 (17,463.6 > 17,460)
    p = _by_key(_run(_funded({"BTC-USD": "0.0001", "ETH-USD": "-0.0002"}))[0])[(A, "sub0")]
    f = forecast(p)
    start = p.block.timestamp
    assert f.at == (start // HOUR + 3234) * HOUR
    sim = _sim(p)
    assert not sim.at_time(f.at - 1).liquidatable() and sim.at_time(f.at).liquidatable()
    assert [sim.at_time((start // HOUR + k) * HOUR).liquidatable() for k in (3233, 3234)] == [False, True]


def test_funding_in_the_accounts_favour_or_no_rate_gives_no_time() -> None:
    # a long at a negative rate receives funding: never liquidated by time alone
    p = _by_key(_run(_funded({"TRUMP-USD": "-0.001"}))[0])[(A, "sub128")]
    f = forecast(p)
    assert f.modelled and f.at is None and f.interest_per_day == -240 * 10**6
    zero = forecast(_reference()[(A, "sub128")])  # the stand-in serves "0": nothing moves
    assert zero.modelled and zero.at is None and zero.interest_per_day == 0

    def no_rate(s: DydxIndexerStandIn) -> None:
        del s.markets["TRUMP-USD"]["nextFundingRate"]
        s.markets["SOL-USD"]["nextFundingRate"] = "2.5"  # 250 % an hour: not a rate but a broken answer

    positions = _by_key(_run(no_rate)[0])
    for key, ticker in (((A, "sub128"), "TRUMP-USD"), ((B, "sub0"), "SOL-USD")):
        p = positions[key]
        f = forecast(p)
        assert (
            not f.modelled
            and f.at is None
            and f.basis == (f"not modelled: the indexer served no usable nextFundingRate for {ticker}")
        )
        assert p.health == _reference()[key].health  # the check itself is unaffected


def test_a_shock_at_a_later_time_adds_the_funding_ticks_in_between() -> None:
    # TRUMP -2 % (NC 1,300, MMR 980) and 40 hours of 0.15 %/h at 9.8 (14.7 USDC a tick): NC 712 < 980
    p = _by_key(_run(_funded({"TRUMP-USD": "0.0015"}))[0])[(A, "sub128")]
    [o] = simulate([p], [parse_shock("TRUMP=-2%")], At(ahead=40 * HOUR), TH)
    ticks = (p.block.timestamp + 40 * HOUR) // HOUR - p.block.timestamp // HOUR
    assert o.at == p.block.timestamp + 40 * HOUR and ticks == 40
    paid = Fraction(1000) * Fraction("9.8") * Fraction("0.0015") * ticks
    there = _reread((A, "sub128"), {"TRUMP-USD": Fraction("9.8")}, -paid)
    assert (o.health_after, o.liquidatable_after) == (there.health, there.liquidatable) and o.liquidatable_after
