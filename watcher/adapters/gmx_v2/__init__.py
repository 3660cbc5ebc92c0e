"""GMX v2 (synthetics) adapter: positions through the Reader, `isPositionLiquidatable` (v2.2) replayed exactly.

Units. Money is GMX's own: USD scaled by 1e30 (`base_unit` = 10**30). A GMX price is USD*1e30 per token base unit, so
`price * 10**decimals` is USD*1e30 per whole token; PerpLeg prices are those per-coin integers as Fractions.

Prices. GMX executes at keeper-signed oracle prices that are not on chain, so the watcher margins every position at
the on-chain Chainlink feed GMX registers for each token in the DataStore: PRICE_FEED(token) and
PRICE_FEED_MULTIPLIER(token), price = latestRoundData.answer * multiplier / 1e30 (ChainlinkPriceFeedUtils), with
min = max = that price. A feed that reverts, answers <= 0, is not registered, or was last updated more than
PRICE_FEED_HEARTBEAT_DURATION(token) seconds before the block (GMX's getPriceFeedPrice reverts then) makes the accounts
using that token unknown (skipped), never healthy.

What is read and what is replayed. Each check is one batch (two after a price move, see below): per account
Reader.getAccountPositions and Reader.getAccountPositionInfoList; per market the DataStore factors below; per token its
feed. The position info gives, at the prices passed in: pending borrowing fee USD and funding fee amount (these are
READ: GMX accrues them with rate models whose pending part depends on pool state and on prices: reserved USD over pool
USD for borrowing, the collateral token's price for funding), the position fee factor and discounts, and the price
impact of closing the whole position (already capped by MAX_POSITION_IMPACT_FACTOR for positive impact). The prices
passed must be the block's own feed prices; a call's arguments cannot depend on another call of the same batch, so the
infos are planned with the latest prices seen, and when the block's feeds answer other prices the reader asks the infos
again at those prices in a second round at the same block (reader.py). A verdict is therefore never priced by an earlier
check. Everything else is REPLAYED in integers at the block's feed prices, as v2.2 PositionUtils.isPositionLiquidatable
does for a liquidation order (forLiquidation = true, shouldValidateMinCollateralUsd = true):

    pnl        = long: sizeInTokens*P.min - sizeInUsd, short: sizeInUsd - sizeInTokens*P.max; when pnl > 0, the pool cap
                 (getPositionPnlUsd): poolPnl = side OI_IN_TOKENS*P - side OI (long; short the reverse; 0 when either
                 is 0), maxPnl = applyFactor(POOL_AMOUNT(pnl token)/divisor * pnl token P.min,
                 MAX_PNL_FACTOR(MAX_PNL_FACTOR_FOR_TRADERS, market, isLong)), cappedPoolPnl = min(poolPnl, maxPnl)
                 (poolPnl < 0 kept); if cappedPoolPnl != poolPnl and both > 0: pnl = floor(pnl*cappedPoolPnl/poolPnl)
                 (pnl token: the long token for longs, the short token for shorts)
    impact     = priceImpactUsd + pendingImpactAmount * (pending > 0 ? P.min : P.max);
                 0 if >= 0, else max(impact, -applyFactor(sizeInUsd, MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS))
    fee tokens = floor(applyFactor(sizeInUsd, positionFeeFactor) / C) + floor(borrowingFeeUsd / C)
                 - max(pro discount, referral trader discount) + fundingFeeAmount          (ui fee 0: no ui receiver)
    remaining  = collateralAmount*C + pnl + impact - fee tokens*C
    liquidatable iff remaining < MIN_COLLATERAL_USD or remaining <= 0
                  or remaining < applyFactor(sizeInUsd, MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION(market))

MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION is v2.2's (ad81d667); v2.0/v2.1 used MIN_COLLATERAL_FACTOR here. No version's
liquidation check uses the open-interest factor (OI * MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER): it only
gates increases (willPositionCollateralBeSufficient), so it is reported in details as the opening requirement.
The pool cap moves with prices (pool pnl with the index price, pool USD with the pnl token's price), so it is replayed
from the DataStore's POOL_AMOUNT, OPEN_INTEREST, OPEN_INTEREST_IN_TOKENS and MAX_PNL_FACTOR values read in the batch.
Other traders' positions are held fixed (their open interest as read) when the price search moves the price. Where the
cap binds, a long's capped pnl need not rise with the price (it is pnl * maxPnl / poolPnl), so the liquidation price is
the boundary the bisection finds, which is the only one whenever remaining collateral is monotonic in the price.
Not replayed: fee accrual after the read block (at_time keeps fees as read), and the price dependence of the pending
borrowing and funding when the price search moves a price (they are held as read at the block's prices: exact at the
current price, a close approximation near the liquidation price).

Modules: keys (constants, DataStore keys, value types), simulator (the replay), reader (planning and parsing the batch),
positions (read values to the common model). Everything is re-exported here.
"""

from __future__ import annotations

from watcher.adapters.gmx_v2.keys import (
    DATA_STORE,
    ERC20,
    FEED,
    FLOAT,
    FUNDING_DIVISOR,
    MAX_POSITIONS,
    PROTOCOL,
    READER,
    ZERO,
    GmxMarket,
    MarketParams,
    _key,
    apply_factor,
    key_min_collateral_usd,
    market_key,
    max_pnl_factor_key,
    open_interest_in_tokens_key,
    open_interest_key,
    pool_amount_key,
    position_key,
    token_key,
)
from watcher.adapters.gmx_v2.reader import GmxV2Reader, make_reader
from watcher.adapters.gmx_v2.simulator import GmxAccountSim, GmxPositionSim
from watcher.registry import ChainProtocol, register

__all__ = [
    "DATA_STORE",
    "ERC20",
    "FEED",
    "FLOAT",
    "FUNDING_DIVISOR",
    "MAX_POSITIONS",
    "PROTOCOL",
    "READER",
    "ZERO",
    "GmxAccountSim",
    "GmxMarket",
    "GmxPositionSim",
    "GmxV2Reader",
    "MarketParams",
    "_key",
    "apply_factor",
    "key_min_collateral_usd",
    "make_reader",
    "market_key",
    "max_pnl_factor_key",
    "open_interest_in_tokens_key",
    "open_interest_key",
    "pool_amount_key",
    "position_key",
    "token_key",
]

register(ChainProtocol("gmx_v2", "reader", make_reader))
