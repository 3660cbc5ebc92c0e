"""GMX v2 constants, DataStore keys as Keys.sol builds them, Precision helpers and the market value types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak

from watcher.abi import Contract

READER = Contract("IGmxReader")
DATA_STORE = Contract("IGmxDataStore")
FEED = Contract("IGmxPriceFeed")
ERC20 = Contract("IERC20Metadata")
FLOAT = 10**30  #: GMX's FLOAT_PRECISION: factors and USD amounts
FUNDING_DIVISOR = 10**30 * 10**15  #: fundingFeeAmountPerSize is stored at FLOAT_PRECISION * FLOAT_PRECISION_SQRT
ZERO = "0x0000000000000000000000000000000000000000"
MAX_POSITIONS = 1_000  #: end index for the account's position list (GMX clamps it to the list's length)
PROTOCOL = "gmx_v2"


def _key(*parts: tuple[str, Any]) -> bytes:
    """keccak256(abi.encode(...)) as Keys.sol builds keys; a string part is itself hashed as abi.encode(string)."""
    types, values = [], []
    for t, v in parts:
        if t == "name":
            types.append("bytes32")
            values.append(keccak(abi_encode(["string"], [v])))
        else:
            types.append(t)
            values.append(v)
    return keccak(abi_encode(types, values))


def key_min_collateral_usd() -> bytes:
    """Keys.MIN_COLLATERAL_USD."""
    return keccak(abi_encode(["string"], ["MIN_COLLATERAL_USD"]))


def market_key(name: str, market: str, flag: bool | None = None) -> bytes:
    """keccak256(abi.encode(NAME, market[, flag])), e.g. minCollateralFactorForLiquidationKey(market)."""
    parts: list[tuple[str, Any]] = [("name", name), ("address", market)]
    if flag is not None:
        parts.append(("bool", flag))
    return _key(*parts)


def open_interest_key(market: str, collateral: str, is_long: bool) -> bytes:
    """Keys.openInterestKey(market, collateralToken, isLong)."""
    return _key(("name", "OPEN_INTEREST"), ("address", market), ("address", collateral), ("bool", is_long))


def open_interest_in_tokens_key(market: str, collateral: str, is_long: bool) -> bytes:
    """Keys.openInterestInTokensKey(market, collateralToken, isLong)."""
    return _key(("name", "OPEN_INTEREST_IN_TOKENS"), ("address", market), ("address", collateral), ("bool", is_long))


def pool_amount_key(market: str, token: str) -> bytes:
    """Keys.poolAmountKey(market, token)."""
    return _key(("name", "POOL_AMOUNT"), ("address", market), ("address", token))


def max_pnl_factor_key(pnl_factor_type: str, market: str, is_long: bool) -> bytes:
    """Keys.maxPnlFactorKey(pnlFactorType, market, isLong), e.g. pnlFactorType MAX_PNL_FACTOR_FOR_TRADERS."""
    return _key(("name", "MAX_PNL_FACTOR"), ("name", pnl_factor_type), ("address", market), ("bool", is_long))


def token_key(name: str, token: str) -> bytes:
    """Keys.priceFeedKey / priceFeedMultiplierKey(token)."""
    return _key(("name", name), ("address", token))


def position_key(account: str, market: str, collateral: str, is_long: bool) -> bytes:
    """Position.getPositionKey: keccak256(abi.encode(account, market, collateralToken, isLong))."""
    return keccak(abi_encode(["address", "address", "address", "bool"], [account, market, collateral, is_long]))


def apply_factor(value: int, factor: int) -> int:
    """Precision.applyFactor: floor(value * factor / 1e30) for a non-negative value."""
    return value * factor // FLOAT


@dataclass(frozen=True, slots=True)
class GmxMarket:
    """Market.Props."""

    market: str
    index: str
    long: str
    short: str


@dataclass(frozen=True, slots=True)
class MarketParams:
    """The DataStore values the check needs for one market (factors at 1e30)."""

    min_collateral_factor_for_liquidation: int
    min_collateral_factor: int
    max_impact_factor_for_liquidations: int
    oi_multiplier_long: int
    oi_multiplier_short: int
    open_interest_long: int  #: getOpenInterest(market, true): both collateral tokens, each / poolDivisor
    open_interest_short: int
    open_interest_tokens_long: int  #: getOpenInterestInTokens(market, true), the same way
    open_interest_tokens_short: int
    pool_amount_long: int  #: getPoolAmount(market, longToken): stored / poolDivisor
    pool_amount_short: int
    max_pnl_factor_long: int  #: MAX_PNL_FACTOR(MAX_PNL_FACTOR_FOR_TRADERS, market, true)
    max_pnl_factor_short: int


def word(key: bytes) -> int:
    """A bytes32 key as the integer the fast ABI path encodes."""
    return int.from_bytes(key, "big")


def signed(w: int) -> int:
    """A 256-bit word as a two's complement int256."""
    return w - (1 << 256) if w >> 255 else w


def decimals_from_multiplier(multiplier: int, feed_decimals: int) -> int:
    """Token decimals from GMX's feed multiplier, set as 10**(60 - tokenDecimals - feedDecimals)."""
    d = len(str(multiplier)) - 1
    if multiplier <= 0 or 10**d != multiplier or not 0 <= 60 - d - feed_decimals <= 36:
        raise ValueError(f"price feed multiplier {multiplier} does not give the token's decimals")
    return 60 - d - feed_decimals
