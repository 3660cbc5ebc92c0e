"""Time to liquidation at constant prices against the real Aave Pool (v3.0 and v3.6, eth-tester and anvil).

A position is brought close to its boundary by a price, then the watcher predicts the first second at which the
Pool's health factor falls below 1 with interest alone. A block mined at that second must have HF < 1e18 in
getUserAccountData; a block one second earlier must not.
"""

from __future__ import annotations

import pytest

from tests.aave_helpers import Watcher, latest_timestamp, send_at, set_price_at
from watcher.devchain.aave import AaveMarket, PositionSpec
from watcher.devchain.deploy import Tx, revert_snapshot, send_txs, take_snapshot
from watcher.forecast import DAY, forecast
from watcher.model import WAD
from watcher.risk import liquidation_price


def _tick_at(market: AaveMarket, timestamp: int) -> int:
    """Mine a block at `timestamp` with a transaction that touches no reserve; returns the block."""
    token = market.tokens["WETH"]
    data = token.encode_abi("mint", args=[market.admin, 1])
    return int(send_at(market, market.admin, token.address, data, timestamp)["blockNumber"])


def _drain(market: AaveMarket, symbol: str) -> None:
    """A whale borrows 95% of what is left of `symbol` (past the 90% kink: the steep slope of the curve)."""
    [whale] = market.new_users(1)
    market.open_positions_bulk([PositionSpec(whale, {"WBTC": 500 * 10**8})])
    left = int(market.tokens[symbol].functions.balanceOf(market.a_tokens[symbol]).call())
    data = market.pool.encode_abi("borrow", args=[market.assets[symbol], left * 95 // 100, 2, 0, whale])
    send_txs(market.w3, [Tx(whale, market.pool.address, data, 2_000_000, "whale borrow")])


@pytest.mark.parametrize(
    ("supplies", "borrows", "moving", "emode"),
    [
        ({"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6}, "WETH", 0),
        # eMode, and a collateral that earns supply interest itself while the debt compounds
        ({"USDC": 50_000 * 10**6, "DAI": 1_000 * 10**18}, {"DAI": 40_000 * 10**18}, "DAI", 1),
    ],
)
def test_predicted_second_is_the_pools_first_liquidatable(
    aave_market: AaveMarket, supplies: dict[str, int], borrows: dict[str, int], moving: str, emode: int
) -> None:
    [user] = aave_market.new_users(1)
    aave_market.open_positions_bulk([PositionSpec(user, supplies, borrows, emode)])
    # A second borrower drives the debt asset's usage up, so the borrow rate is high and the time is days.
    debt = next(iter(borrows))
    _drain(aave_market, debt)
    watcher = Watcher(aave_market, [user])
    position = watcher.positions()[user]
    at = latest_timestamp(aave_market.w3) + 60
    leg = next(x for x in (*position.collateral, *position.debt) if x.symbol == moving)
    lp = liquidation_price(position.simulator.at_time(at), leg)
    assert lp is not None
    # just on the safe side of the boundary: health a few bps above 1
    near = lp.price * 10_004 // 10_000 if lp.falling else lp.price * 9_996 // 10_000
    set_price_at(aave_market, moving, near, at)
    position = watcher.positions()[user]
    assert position.block.timestamp == at and not position.liquidatable

    f = forecast(position)
    assert f.modelled and f.at is not None, f
    assert DAY // 24 < f.at - at < 60 * DAY, (f.at - at, f)
    assert f.interest_per_day is not None and f.interest_per_day > 0
    debt_leg = next(x for x in position.debt if x.symbol == debt)
    assert float(f.apy[("debt", debt_leg.asset)]) > 0.3  # past the kink
    for leg in position.collateral:
        if leg.symbol == debt:  # supplied and borrowed: this collateral earns the drained reserve's high rate
            assert float(f.apy[("collateral", leg.asset)]) > 0.1

    w3 = aave_market.w3
    snap = take_snapshot(w3)
    block = _tick_at(aave_market, f.at)
    assert aave_market.health_factor(user, block) < WAD
    revert_snapshot(w3, snap)
    block = _tick_at(aave_market, f.at - 1)
    assert aave_market.health_factor(user, block) >= WAD
