"""Time to liquidation at constant prices against the real Morpho Blue 1.0.0: liquidate() at the predicted second."""

from __future__ import annotations

from web3 import Web3

from tests.aave_helpers import next_block_at
from tests.test_morpho_blue import USDC, WETH, MorphoWatcher, _open
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.morpho import MorphoMarket, deploy_morpho
from watcher.forecast import DAY, forecast


def _liquidatable_at(market: MorphoMarket, liquidator: str, user: str, timestamp: int) -> bool:
    """Mine a block at `timestamp` (the oracle set to the price it has) and ask liquidate() there; rolled back."""
    snap = take_snapshot(market.w3)
    try:
        next_block_at(market.w3, timestamp)
        block = market.set_price(market.price())
        assert market.w3.eth.get_block(block)["timestamp"] == timestamp
        return market.can_liquidate(liquidator, user, block)
    finally:
        revert_snapshot(market.w3, snap)


def test_predicted_second_is_the_first_liquidate_that_succeeds(chain: Web3) -> None:
    # 2000 USDC supplied, 1719 borrowed: IrmMock's rate is the utilization (86%) per year, so hours, not years.
    market = deploy_morpho(chain, liquidity=2_000 * USDC)
    [user] = _open(market, [(WETH, 1_719 * USDC)])
    watcher = MorphoWatcher(market, [user])
    [position] = watcher.check().positions
    assert not position.liquidatable
    f = forecast(position)
    start = position.block.timestamp
    assert f.modelled and f.at is not None and 60 < f.at - start < 30 * DAY, f
    assert f.interest_per_day is not None and f.interest_per_day > 0
    assert 0.5 < float(f.apy[("debt", position.debt[0].asset)]) < 2  # ~86% APR compounded
    assert f.apy[("collateral", position.collateral[0].asset)] == "0"
    liquidator = market.liquidator()
    assert _liquidatable_at(market, liquidator, user, f.at)
    assert not _liquidatable_at(market, liquidator, user, f.at - 1)
