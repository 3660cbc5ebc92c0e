"""Compound v3 (Comet) adapter: raw market and account state in one batch, `isLiquidatable` and absorb replayed exactly.

A check reads, at one pinned block: numAssets, getAssetInfo(i) for each asset, getPrice for the base feed and every
collateral feed, totalsBasic, baseScale, baseToken, baseTokenPriceFeed and the eight rate-model views (supplyKink,
supplyPerSecondInterestRateSlopeLow/High/Base, borrowKink, borrowPerSecondInterestRateSlopeLow/High/Base); ERC20
symbol() of each token until known; per account: userBasic and userCollateral for each asset. Health follows Comet's
own integer rounding (CometMainInterface `isLiquidatable`):
liquidity = sum over assetsIn of floor(floor(balance*price/scale) * liquidateCollateralFactor / 1e18)
            - floor(floor(|principal| * baseBorrowIndex / 1e15) * basePrice / baseScale),
liquidatable iff liquidity < 0.

Two verdicts, two indexes. `Position.liquidatable` and `health` are isLiquidatable's: it reads the STORED
baseBorrowIndex, as of totalsBasic.lastAccrualTime. absorb() first runs accrueInternal, which moves both indexes to the
block's timestamp with one utilization taken from the stored totals:
    utilization = floor(presentValueBorrow * 1e18 / presentValueSupply)   (0 without supply)
    rate = base + floor(slopeLow * min(u, kink) / 1e18) [+ floor(slopeHigh * (u - kink) / 1e18) above the kink]
    index += floor(index * (rate * elapsed) / 1e18)                       (safe64: reverts past uint64)
so absorb can succeed while isLiquidatable still says false. `details["absorb_health"]` is the health with the indexes
accrued to the read block's timestamp (what absorb() would see if it ran in that block) and `details["absorbable_now"]`
whether absorb would succeed there (liquidatable at the accrued index and absorb not paused). The simulator's
`at_time(t)` accrues the same way, so a later block's absorb can be predicted too.

Modules: math (scales, rate model, accrual), simulator (the isLiquidatable replay), reader (planning and parsing the
batch), options (the deployment keys and market selection). Everything is re-exported here.
"""

from __future__ import annotations

from watcher.adapters.compound_v3.math import (
    BASE_INDEX_SCALE,
    FACTOR_SCALE,
    CometRates,
    accrued_indices,
    utilization,
)
from watcher.adapters.compound_v3.options import CometOptions, settle
from watcher.adapters.compound_v3.reader import (
    COMET,
    ERC20,
    PAUSE_ABSORB_OFFSET,
    PRICE_SCALE,
    RATE_VIEWS,
    CompoundV3Reader,
    make_reader,
)
from watcher.adapters.compound_v3.simulator import CometAsset, CometSimulator, comet_decides
from watcher.registry import ChainProtocol, register

__all__ = [
    "BASE_INDEX_SCALE",
    "COMET",
    "ERC20",
    "FACTOR_SCALE",
    "PAUSE_ABSORB_OFFSET",
    "PRICE_SCALE",
    "RATE_VIEWS",
    "CometAsset",
    "CometOptions",
    "CometRates",
    "CometSimulator",
    "CompoundV3Reader",
    "accrued_indices",
    "comet_decides",
    "make_reader",
    "settle",
    "utilization",
]


register(ChainProtocol("compound_v3", "comet", make_reader, options=CometOptions, settle=settle))
