"""The Synthetix perps v3 adapter against our SynthetixPerpsStandIn (not Synthetix's proxy): verdicts = canLiquidate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction

import pytest

from tests.aave_helpers import local_client, next_block_at
from watcher.adapters.base import Account, ReadError
from watcher.adapters.synthetix_perps_v3 import (
    MarketState,
    SynthetixAccountSimulator,
    SynthetixPerpsV3Reader,
    make_reader,
)
from watcher.check import CheckResult, run_check
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.synthetix import (
    BTC,
    ETH,
    SynthetixStandInMarket,
    deploy_synthetix_stand_in,
    owner_addresses,
)
from watcher.model import WAD, Position
from watcher.risk import perp_top_ups

D18 = 10**18
LONG, SHORT, PAIR, FLAT = 1, 2, 3, 4


@pytest.fixture(scope="module", params=["eth-tester", "anvil"])
def stand_in(request: pytest.FixtureRequest) -> Iterator[SynthetixStandInMarket]:
    """One stand-in per chain for the module, with four accounts: a long, a short, a two-market one, an empty one."""
    w3 = (
        request.getfixturevalue("anvil").w3 if request.param == "anvil" else request.getfixturevalue("eth_tester_chain")
    )
    snap = take_snapshot(w3)
    market = deploy_synthetix_stand_in(w3)
    owners = owner_addresses(3)
    market.open_account(LONG, owners[0], 2_000 * D18)
    market.set_position(LONG, ETH.market_id, 10 * D18, 1_950 * D18, 5 * D18 // 10, 10**15)
    market.open_account(SHORT, owners[1], 3_000 * D18, debt=120 * D18)
    market.set_position(SHORT, BTC.market_id, -D18, 59_000 * D18, 6 * D18 // 10, 11 * 10**14)
    market.open_account(PAIR, owners[0], 6_000 * D18)
    market.set_position(PAIR, ETH.market_id, 15 * D18, 2_010 * D18, 7 * D18 // 10, 10**15)
    market.set_position(PAIR, BTC.market_id, -D18 // 2, 61_000 * D18, 6 * D18 // 10, 10**15)
    market.open_account(FLAT, owners[2], 100 * D18)
    yield market
    revert_snapshot(w3, snap)


@pytest.fixture
def market(stand_in: SynthetixStandInMarket) -> Iterator[SynthetixStandInMarket]:
    """The module's stand-in, rolled back after each test."""
    snap = take_snapshot(stand_in.w3)
    yield stand_in
    revert_snapshot(stand_in.w3, snap)


class StandInWatcher:
    """The watcher's real read path (ChainClient + run_check) over the stand-in."""

    def __init__(self, market: SynthetixStandInMarket, ids: list[int]) -> None:
        w3 = market.w3
        self.client = local_client(w3)
        owners = owner_addresses(3)
        self.reader = SynthetixPerpsV3Reader(
            "synthetix_perps_v3", "local", market.proxy.address, [Account(owners[0], "alice")], ids
        )

    def check(self) -> CheckResult:
        """One check, as `watcher check` runs it."""
        return run_check({"local": self.client}, [self.reader])

    def positions(self) -> dict[int, Position]:
        """Positions by account id; fails the test if anything was unreadable."""
        result = self.check()
        assert not result.unreadable, result.unreadable
        return {p.details["account_id"]: p for p in result.positions}


def _agree(market: SynthetixStandInMarket, watcher: StandInWatcher) -> dict[int, bool]:
    """Each position's verdict and health agree with the stand-in's canLiquidate and views at the read block."""
    out = {}
    for i, p in watcher.positions().items():
        block = p.block.number
        assert p.liquidatable == market.can_liquidate(i, block), (i, p.health, p.details)
        assert p.details["available_margin"] == market.call("getAvailableMargin", i, block=block)
        if p.perps:
            req = market.call("getRequiredMargins", i, block=block)[1]
            assert sum(leg.requirement for leg in p.perps) == req == p.details["required_maintenance_margin"]
            assert p.cross_equity == p.details["available_margin"]
            assert p.liquidatable == (p.health is not None and p.health < WAD)
        out[i] = p.liquidatable
    return out


def test_standin_verdicts_equal_can_liquidate_across_prices(market: SynthetixStandInMarket) -> None:
    watcher = StandInWatcher(market, [LONG, SHORT, PAIR, FLAT])
    positions = watcher.positions()
    assert positions[LONG].label == "alice" and positions[PAIR].label == "alice"
    assert positions[SHORT].label == "acct2" and positions[LONG].key.endswith(":acct1")
    assert positions[FLAT].health is None and positions[FLAT].perps == () and positions[FLAT].cross_equity is None
    seen = [_agree(market, watcher)]
    assert not any(seen[0].values())
    for eth, btc in ((1_900, 62_000), (1_820, 63_500), (1_790, 64_500), (1_700, 66_000), (1_500, 70_000)):
        market.set_price(ETH.market_id, eth * D18)
        market.set_price(BTC.market_id, btc * D18)
        seen.append(_agree(market, watcher))
    print(f"stand-in verdicts per step: {seen}")
    assert seen[-1] == {LONG: True, SHORT: True, PAIR: True, FLAT: False}
    # A flagged account is liquidatable whatever its margin, as canLiquidate says.
    market.set_price(ETH.market_id, 2_000 * D18)
    market.set_price(BTC.market_id, 60_000 * D18)
    market.send("flag", FLAT)
    assert _agree(market, watcher)[FLAT] is True


def _liquidatable_at(market: SynthetixStandInMarket, account_id: int, market_id: int, price: int, at: int) -> bool:
    """Set one market's index price in a block at timestamp `at`; whether canLiquidate says so there. Rolled back."""
    snap = take_snapshot(market.w3)
    try:
        next_block_at(market.w3, at)
        block = market.set_price(market_id, price)
        assert market.w3.eth.get_block(block)["timestamp"] == at
        return market.can_liquidate(account_id, block)
    finally:
        revert_snapshot(market.w3, snap)


def test_standin_liquidation_price_is_the_boundary(market: SynthetixStandInMarket) -> None:
    watcher = StandInWatcher(market, [LONG, SHORT, PAIR])
    positions = watcher.positions()
    checked = 0
    for i, p in positions.items():
        assert not p.liquidatable and p.health is not None and p.health > WAD
        sim = p.simulator
        assert isinstance(sim, SynthetixAccountSimulator)
        # Funding and interest keep accruing, so the boundary is solved at the time of the block that moves the price.
        at = p.block.timestamp + 120
        later = sim.at_time(at)
        for leg in p.perps:
            market_id = leg.details["market_id"]
            assert leg.liquidation_price == Fraction(sim.liquidation_price(market_id), D18)  # whole USD per coin
            price = later.liquidation_price(market_id)
            assert price is not None
            safe = price + 1 if leg.size > 0 else price - 1
            assert _liquidatable_at(market, i, market_id, price, at), (i, leg.market, price)
            assert not _liquidatable_at(market, i, market_id, safe, at), (i, leg.market, price)
            # The requirement (notional-scaled margin and flag reward) moved with the price, so a solve that held the
            # requirement fixed would miss this boundary.
            assert later.with_price(leg.market, price).requirement() != later.requirement()
            checked += 1
    assert checked == 4
    pair = positions[PAIR]
    assert {leg.side for leg in pair.perps} == {"long", "short"}


def test_standin_top_up_restores_target(market: SynthetixStandInMarket) -> None:
    market.set_price(ETH.market_id, 1_790 * D18)
    watcher = StandInWatcher(market, [LONG])
    [p] = watcher.positions().values()
    target = 15 * WAD // 10
    [up] = perp_top_ups(p, target)
    assert up.scope == "cross" and up.health_after >= target
    # Deposit it (snxUSD): the stand-in's own margins show the target reached.
    market.send("setCollateral", LONG, 0, 2_000 * D18 + up.amount)
    available = market.call("getAvailableMargin", LONG)
    required = market.call("getRequiredMargins", LONG)[1]
    assert available * WAD // required >= target * 999 // 1000  # the reward's collateral-scaled cap may move a little


def test_standin_one_eth_call_per_check(market: SynthetixStandInMarket) -> None:
    watcher = StandInWatcher(market, [LONG, SHORT, PAIR, FLAT])
    first = watcher.check()
    assert first.stats["local"].rounds == 2 and not first.unreadable
    for step in range(3):
        market.set_price(ETH.market_id, (1_990 - 10 * step) * D18)
        again = watcher.check()
        stats = again.stats["local"]
        assert stats.eth_calls == 1 and stats.rounds == 1, stats
        assert len(again.positions) == 4
    # A new position is noticed at once, with one more round at the same block.
    market.set_position(FLAT, ETH.market_id, D18 // 10, 2_000 * D18, 0, 10**15)
    later = watcher.check()
    assert later.stats["local"].rounds == 2 and len(later.positions) == 4


def test_standin_revert_and_malformed_are_read_errors(market: SynthetixStandInMarket) -> None:
    watcher = StandInWatcher(market, [LONG])
    watcher.positions()
    # A market without a price: indexPrice and the margin views revert -> unknown, never healthy.
    market.set_price(ETH.market_id, 0)
    result = watcher.check()
    assert not result.positions and result.unreadable and "reverted" in result.unreadable[0].reason
    market.set_price(ETH.market_id, 2_000 * D18)
    assert watcher.positions()
    # Short or garbage answers, handed to the parser directly.
    reader = watcher.reader
    plan = reader.calls()
    from watcher.model import BlockRef

    with pytest.raises(ReadError):
        reader.parse([(True, b"\x01")] * len(plan), BlockRef(1, 1))
    with pytest.raises(ReadError):
        reader.parse([(True, b"")] * (len(plan) - 1), BlockRef(1, 1))


def test_make_reader_takes_ids_from_the_deployment() -> None:
    from watcher.config import Deployment

    dep = Deployment(
        name="synthetix_perps_v3",
        adapter="synthetix_perps_v3",
        chain="base",
        chain_id=8453,
        address="0x0A2AF931eFFd34b81ebcc57E3d3c9B1E1dE1C9Ce",
        account_ids=[7, 170141183460469231731687303715884105727],
    )
    reader = make_reader(dep, [Account("0x" + "11" * 20, "a")])
    assert reader.account_ids == [7, 2**127 - 1] and reader.protocol == "synthetix_perps_v3"
    assert len(reader.calls()) == 2 * 2 + 2  # first round: open markets and collaterals per id, oracle and node


def test_standin_margin_math_by_hand() -> None:
    # ETH market: skewScale 1e6, initialMarginRatio 0.02, minimumInitialMarginRatio 0.01, maintenance scalar 0.5,
    # minimumPositionMargin 50. A 10 ETH position at 1900 USD:
    #   impact = 10e18 * 1e18 / 1e24 = 1e13 (1e-5); imr = 1e13 * 0.02e18 / 1e18 + 0.01e18 = 2e11 + 1e16
    #   mmr = (1e16 + 2e11) * 0.5 = 5.0001e15 (0.0050001 -> 200x maintenance leverage at this size)
    #   notional = 10 * 1900 = 19000e18; maintenance = 19000e18 * 5.0001e15 / 1e18 + 50e18 = 95.0019e18 + 50e18
    eth = MarketState(100, "ETH", 10**6 * D18, 2 * D18 // 100, D18 // 100, D18 // 2, D18 // 1000, 50 * D18, D18 // 2,
                      D18 // 10_000, 5 * D18 // 10_000, D18, 30, 0, 0, 0, 0, 9 * D18)  # fmt: skip
    mm, mmr, notional = eth.margins(10 * D18, 1_900 * D18)
    assert mmr == 5_000_100_000_000_000 and notional == 19_000 * D18
    assert mm == 95_001_900_000_000_000_000 + 50 * D18
    # Size scaling: 100,000 ETH is 10% of skewScale: imr = 0.1 * 0.02 + 0.01 = 0.012, mmr = 0.006.
    assert eth.margins(-100_000 * D18, 1_900 * D18)[1] == 6 * 10**15
    # Liquidation windows: (maker + taker) * skewScale * multiplier * seconds = 0.0006 * 1e6 * 1 * 30 = 18000 ETH
    assert eth.windows(18_000 * D18) == 1 and eth.windows(18_000 * D18 + 1) == 2
    assert replace(eth, liquidation_window_seconds=0).windows(D18) == 0


def test_standin_simulator_reward_by_hand(market: SynthetixStandInMarket) -> None:
    # LONG: 10 ETH at 2000: flag reward = 20000e18 * 0.001 = 20e18; collateral reward = 2000e18 * 0.005 = 10e18.
    # Costs: flag = 0.25 + 0.1 * 1 feed (one position, snxUSD needs none) = 0.35, liquidate = 0.2 -> c = 0.55.
    # minCap = max(0.55 + 1, 0.55 * 1.5) = 1.55; maxCap = min(2000 * 0.5, 500) = 500
    # reward = min(max(1.55, 20 + 0.55), 500) = 20.55e18; one window (10 ETH < 18000 ETH) adds nothing.
    watcher = StandInWatcher(market, [LONG])
    [p] = watcher.positions().values()
    assert p.details["liquidation_reward"] == 20_550_000_000_000_000_000
    assert market.call("getRequiredMargins", LONG)[2] == p.details["liquidation_reward"]
    sim = p.simulator
    assert sim is not None
    # At 1000 USD the flag reward halves to 10: reward = 10.55e18.
    assert sim.with_price("ETH", 1_000 * D18).reward() == 10_550_000_000_000_000_000  # type: ignore[attr-defined]
