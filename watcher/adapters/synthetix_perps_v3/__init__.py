"""Synthetix perps v3 adapter: PerpsMarketProxy views plus a few storage slots in one batch, canLiquidate replayed.

Synthetix perps accounts are NFT ids (uint128), each one cross-margined account owned by an address. The check the
watcher replays is LiquidationModule.canLiquidate -> PerpsAccount.isEligibleForLiquidation (synthetix-v3 main):

    liquidatable  iff  flagged  or  requiredMaintenanceMargin + liquidationReward > availableMargin

- availableMargin = discounted collateral value + sum of positions' totalPnl - debt, where Position.getPnl at the index
  price p is pricePnl = size*(p - latestInteractionPrice)/1e18, accruedFunding = size*(nextFunding(p) -
  latestInteractionFunding)/1e18 with nextFunding(p) = lastFundingValue + avgRate*elapsed/1e18*p/1e18, minus
  chargedInterest = (|size|*p/1e18 * lockedOiRatio/1e18) * (nextInterestAccrued - latestInterestAccrued)/1e18.
  Every division truncates toward zero, as Solidity's does.
- requiredMaintenanceMargin = sum over positions of PerpsMarketConfiguration.calculateRequiredMargins:
  imr = (|size|/skewScale)*initialMarginRatio + minimumInitialMarginRatio, mmr = imr * maintenanceMarginScalar,
  maintenance = (|size|*p/1e18) * mmr/1e18 + minimumPositionMargin (all D18 floors).
- liquidationReward = keeperReward(max(sum flagRewardRatio*notional, collateralValue*collateralLiquidateRewardRatio),
  flagCost + liquidateCost, collateralValue) + keeperReward(0, liquidateCost, 0) * (maxLiquidationWindows - 1),
  with keeperReward(r, c, m) = min(max(minCap(c), r + c), maxCap(m)); keeper costs come from the keeper-cost
  oracle node (processWithRuntime on the oracle manager), and getRequiredMargins returns maintenance + reward.

The price-dependent state no view serves (each position's latestInteractionPrice/Funding/InterestAccrued, each
market's lastFundingRate/Value/Time, the InterestRate record, the factory's oracle manager) is read by storage slot at
Synthetix's namespaced slots. The replay is checked against getOpenPosition, getAvailableMargin and
getRequiredMargins at the same block: any difference is a ReadError (a layout change must not read as healthy).

Money is USD in D18 (base_unit 1e18); sizes are D18 coins (size_decimals 18); prices D18 USD per coin.

Modules: math (D18 helpers, MarketState, PositionState), simulator (the canLiquidate replay), reader (planning, parsing
and checking the batch). Everything is re-exported here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from watcher.adapters.synthetix_perps_v3.math import D18, DAY, YEAR, MarketState, PositionState, tdiv
from watcher.adapters.synthetix_perps_v3.reader import (
    FACTORY_SLOT,
    INTEREST_SLOT,
    NODE,
    PROXY,
    USD,
    SynthetixPerpsV3Reader,
    make_reader,
    market_slot,
    position_slot,
)
from watcher.adapters.synthetix_perps_v3.simulator import SynthetixAccountSimulator
from watcher.config.options import ProtocolOptions
from watcher.registry import ChainProtocol, register

__all__ = [
    "D18",
    "DAY",
    "FACTORY_SLOT",
    "INTEREST_SLOT",
    "NODE",
    "PROXY",
    "USD",
    "YEAR",
    "MarketState",
    "PositionState",
    "SynthetixAccountSimulator",
    "SynthetixPerpsOptions",
    "SynthetixPerpsV3Reader",
    "make_reader",
    "market_slot",
    "position_slot",
    "tdiv",
]


class SynthetixPerpsOptions(ProtocolOptions):
    """Synthetix perps v3's own [[deployments]] keys."""

    #: the perps account (NFT) ids to watch
    account_ids: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)


register(ChainProtocol("synthetix_perps_v3", "perps_market_proxy", make_reader, options=SynthetixPerpsOptions))
