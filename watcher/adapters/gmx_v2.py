"""GMX v2 (synthetics) adapter: positions through the Reader, `isPositionLiquidatable` (v2.2) replayed exactly.

Units. Money is GMX's own: USD scaled by 1e30 (`base_unit` = 10**30). A GMX price is USD*1e30 per token base unit, so
`price * 10**decimals` is USD*1e30 per whole token; PerpLeg prices are those per-coin integers as Fractions.

Prices. GMX executes at keeper-signed oracle prices that are not on chain, so the watcher margins every position at
the on-chain Chainlink feed GMX registers for each token in the DataStore: PRICE_FEED(token) and
PRICE_FEED_MULTIPLIER(token), price = latestRoundData.answer * multiplier / 1e30 (ChainlinkPriceFeedUtils), with
min = max = that price. A feed that reverts, answers <= 0, is not registered, or was last updated more than
PRICE_FEED_HEARTBEAT_DURATION(token) seconds before the block (GMX's getPriceFeedPrice reverts then) makes the accounts
using that token unknown (skipped), never healthy.

What is read and what is replayed. Each check is one batch: per account Reader.getAccountPositions and
Reader.getAccountPositionInfoList; per market the DataStore factors below; per token its feed. The position info gives,
at the prices passed in: pending borrowing fee USD and funding fee amount (these are READ: GMX accrues them with rate
models whose pending part depends on pool state), the position fee factor and discounts, and the price impact of
closing the whole position (already capped by MAX_POSITION_IMPACT_FACTOR for positive impact). The prices passed are the
previous check's (a call's arguments cannot depend on another call of the same batch); only the pending part of
borrowing/funding since the market's last update is priced by them. Everything else is REPLAYED in integers at the
current feed prices, as v2.2 PositionUtils.isPositionLiquidatable does for a liquidation order (forLiquidation = true,
shouldValidateMinCollateralUsd = true):

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
Not replayed: fee accrual after the read block (at_time keeps fees as read).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from watcher.abi import Contract, address_word, symbol_or_prefix, words
from watcher.adapters.base import Account, Call, ReadError, TaggedReader
from watcher.model import BPS, WAD, BlockRef, Leg, PerpLeg, Position
from watcher.registry import ChainProtocol, register

READER = Contract("IGmxReader")
DATA_STORE = Contract("IGmxDataStore")
FEED = Contract("IGmxPriceFeed")
ERC20 = Contract("IERC20Metadata")
FLOAT = 10**30  #: GMX's FLOAT_PRECISION: factors and USD amounts
FUNDING_DIVISOR = 10**30 * 10**15  #: fundingFeeAmountPerSize is stored at FLOAT_PRECISION * FLOAT_PRECISION_SQRT
ZERO = "0x0000000000000000000000000000000000000000"
MAX_POSITIONS = 1_000  #: end index for the account's position list (GMX clamps it to the list's length)
PROTOCOL = "gmx_v2"
_SEARCH_DOUBLINGS = 256


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


@dataclass(frozen=True, slots=True)
class GmxPositionSim:
    """Exact replay of v2.2 isPositionLiquidatable(forLiquidation = true) for one position, prices replaceable."""

    is_long: bool
    size_usd: int
    size_tokens: int
    collateral_amount: int
    pending_impact_amount: int
    index_token: str
    collateral_token: str
    index_price: int  #: USD*1e30 per index token base unit (min = max)
    collateral_price: int  #: USD*1e30 per collateral token base unit
    price_impact_usd: int  #: impact of closing the whole position, positive side capped (read)
    position_fee_factor: int
    pro_discount_factor: int  #: 0 unless the account has a pro tier with a discount
    referral_discount_factor: int  #: the trader discount factor; 0 without a referral code
    borrowing_fee_usd: int  #: pending, read
    funding_fee_amount: int  #: pending, collateral token base units, read
    max_impact_factor_for_liquidations: int
    min_collateral_factor: int  #: MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION
    min_collateral_usd: int
    # The pool cap on positive pnl; all 0 (no open interest) leaves pnl uncapped, as GMX's getPnl returns 0 then.
    pool_token: str = ""  #: the pnl token: the market's long token for a long, short token for a short
    pool_token_price: int = 0  #: its price per base unit (P.min)
    pool_amount: int = 0  #: getPoolAmount(market, pool_token), already / poolDivisor
    open_interest_usd: int = 0  #: getOpenInterest(market, isLong) of the position's side
    open_interest_tokens: int = 0  #: getOpenInterestInTokens(market, isLong) of the position's side
    max_pnl_factor: int = 0  #: MAX_PNL_FACTOR(MAX_PNL_FACTOR_FOR_TRADERS, market, isLong)

    def uncapped_pnl(self) -> int:
        """The position's pnl before the pool cap (uncappedBasePnlUsd)."""
        value = self.size_tokens * self.index_price
        return value - self.size_usd if self.is_long else self.size_usd - value

    def pool_pnl(self) -> int:
        """MarketUtils.getPnl(market, indexPrice, isLong, maximize = true) for the position's side."""
        if self.open_interest_usd == 0 or self.open_interest_tokens == 0:
            return 0
        value = self.open_interest_tokens * self.index_price
        return value - self.open_interest_usd if self.is_long else self.open_interest_usd - value

    def max_pool_pnl(self) -> int:
        """applyFactor(poolUsd, MAX_PNL_FACTOR_FOR_TRADERS): the most pnl the pool pays the side."""
        return apply_factor(self.pool_amount * self.pool_token_price, self.max_pnl_factor)

    def pnl(self) -> int:
        """getPositionPnlUsd for the whole size, positive pnl scaled by cappedPoolPnl / poolPnl as GMX does."""
        total = self.uncapped_pnl()
        if total <= 0:
            return total
        pool = self.pool_pnl()
        capped = pool if pool < 0 else min(pool, self.max_pool_pnl())  # MarketUtils.getCappedPnl
        if capped != pool and capped > 0 and pool > 0:
            # Precision.mulDiv(uint, int, uint) with a positive numerator: floor. Then * sizeDeltaInTokens /
            # sizeInTokens for the whole size is exact.
            total = total * capped // pool
        return total

    def impact(self) -> int:
        """Price impact as the liquidation check counts it: pending impact added, positive dropped, negative capped."""
        impact = self.price_impact_usd + self.pending_impact_amount * self.index_price
        if impact >= 0:
            return 0
        return max(impact, -apply_factor(self.size_usd, self.max_impact_factor_for_liquidations))

    def fee_amounts(self) -> dict[str, int]:
        """getPositionFees in collateral token units at the collateral price (isLiquidation = false)."""
        c = self.collateral_price
        if c <= 0:
            # GMX's oracle refuses a zero price; for the search, worthless collateral owes no token amounts.
            return {"position": 0, "borrowing": 0, "discount": 0, "total": 0}
        position_fee = apply_factor(self.size_usd, self.position_fee_factor) // c
        pro = apply_factor(position_fee, self.pro_discount_factor) if self.pro_discount_factor else 0
        referral = apply_factor(position_fee, self.referral_discount_factor)
        borrowing = self.borrowing_fee_usd // c
        discount = max(pro, referral)
        total = position_fee + borrowing - discount + self.funding_fee_amount
        return {"position": position_fee, "borrowing": borrowing, "discount": discount, "total": total}

    def remaining(self) -> int:
        """remainingCollateralUsd."""
        c = self.collateral_price
        return self.collateral_amount * c + self.pnl() + self.impact() - self.fee_amounts()["total"] * c

    def min_collateral_usd_for_leverage(self) -> int:
        """applyFactor(sizeInUsd, minCollateralFactor)."""
        return apply_factor(self.size_usd, self.min_collateral_factor)

    def requirement(self) -> int:
        """The least remaining collateral that is not liquidatable (both thresholds are strict)."""
        return max(self.min_collateral_usd, self.min_collateral_usd_for_leverage())

    def reason(self) -> str:
        """The check's verdict as its reason string; "" when not liquidatable."""
        r = self.remaining()
        if r < self.min_collateral_usd:
            return "min collateral"
        if r <= 0:
            return "< 0"
        if r < self.min_collateral_usd_for_leverage():
            return "min collateral for leverage"
        return ""

    def liquidatable(self) -> bool:
        """isPositionLiquidatable's verdict."""
        return self.reason() != ""

    def health(self) -> int | None:
        """floor(remaining * WAD / requirement), 0 when remaining <= 0; None when nothing is required.

        With requirement > 0: health < WAD iff remaining < requirement iff liquidatable.
        """
        req = self.requirement()
        if req <= 0:
            return None
        return max(self.remaining(), 0) * WAD // req

    def with_index_price(self, price: int) -> GmxPositionSim:
        """The index price moved; the collateral and pnl token too when they are the index token (one feed)."""
        out = replace(self, index_price=price)
        if self.collateral_token.lower() == self.index_token.lower():
            out = replace(out, collateral_price=price)
        if self.pool_token.lower() == self.index_token.lower():
            out = replace(out, pool_token_price=price)
        return out

    def liquidation_index_price(self) -> int | None:
        """The index price (per base unit) at which the check turns liquidatable, all else held.

        Long: the largest price that is liquidatable with the next unit up safe. Short: the least liquidatable price
        with the unit below safe. None when no positive price liquidates (or no price is safe).
        """
        p0 = self.index_price

        def liq(p: int) -> bool:
            return self.with_index_price(p).liquidatable()

        if self.is_long:
            if not liq(0):
                return None
            hi = max(p0, 1)
            for _ in range(_SEARCH_DOUBLINGS):
                if not liq(hi):
                    break
                hi *= 2
            else:
                return None
            lo = 0  # liq(lo) and not liq(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if liq(mid):
                    lo = mid
                else:
                    hi = mid
            return lo
        lo = p0
        while lo > 0 and liq(lo):
            lo //= 2
        if liq(lo):
            return None
        hi = max(2 * lo, 1)
        for _ in range(_SEARCH_DOUBLINGS):
            if liq(hi):
                break
            hi *= 2
        else:
            return None
        while hi - lo > 1:  # not liq(lo), liq(hi)
            mid = (lo + hi) // 2
            if liq(mid):
                hi = mid
            else:
                lo = mid
        return hi


@dataclass(frozen=True, slots=True)
class GmxAccountSim:
    """All of an account's GMX positions; each is isolated, so health is the worst position's."""

    positions: tuple[GmxPositionSim, ...]

    def health(self) -> int | None:
        """The worst position's health; None when nothing is required."""
        hs = [h for p in self.positions if (h := p.health()) is not None]
        return min(hs) if hs else None

    def liquidatable(self) -> bool:
        """Whether any position is liquidatable."""
        return any(p.liquidatable() for p in self.positions)

    def at_time(self, timestamp: int) -> GmxAccountSim:
        """Fees are kept as read: their accrual runs on GMX's rate models, which the watcher reads, not replays."""
        return self

    def with_price(self, asset: str, price: int) -> GmxAccountSim:
        """Replace a token's price, per base unit (USD*1e30): the index price, collateral price, or both."""
        out = []
        for p in self.positions:
            if asset.lower() == p.index_token.lower():
                p = p.with_index_price(price)
            else:
                if asset.lower() == p.collateral_token.lower():
                    p = replace(p, collateral_price=price)
                if asset.lower() == p.pool_token.lower():
                    p = replace(p, pool_token_price=price)
            out.append(p)
        return GmxAccountSim(tuple(out))

    def with_supply(self, asset: str, amount: int) -> GmxAccountSim:
        """Deposit collateral into every position that uses `asset` as collateral (each one is isolated)."""
        out = tuple(
            replace(p, collateral_amount=p.collateral_amount + amount)
            if p.collateral_token.lower() == asset.lower()
            else p
            for p in self.positions
        )
        return GmxAccountSim(out)

    def with_repay(self, asset: str, amount: int) -> GmxAccountSim:
        """A GMX position has no debt to repay."""
        raise ValueError("a GMX position has no debt")


def _word(key: bytes) -> int:
    """A bytes32 key as the integer the fast ABI path encodes."""
    return int.from_bytes(key, "big")


def _signed(w: int) -> int:
    return w - (1 << 256) if w >> 255 else w


def _decimals_from_multiplier(multiplier: int, feed_decimals: int) -> int:
    """Token decimals from GMX's feed multiplier, set as 10**(60 - tokenDecimals - feedDecimals)."""
    d = len(str(multiplier)) - 1
    if multiplier <= 0 or 10**d != multiplier or not 0 <= 60 - d - feed_decimals <= 36:
        raise ValueError(f"price feed multiplier {multiplier} does not give the token's decimals")
    return 60 - d - feed_decimals


class GmxV2Reader(TaggedReader):
    """Reads GMX v2 positions of a set of accounts through one Reader and DataStore, in one batch per check."""

    def __init__(
        self,
        protocol: str,
        chain: str,
        reader: str,
        data_store: str,
        accounts: Sequence[Account],
        referral_storage: str = ZERO,
        symbols: Mapping[str, str] | None = None,
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.reader = to_checksum_address(reader)
        self.data_store = to_checksum_address(data_store)
        self.referral_storage = to_checksum_address(referral_storage)
        self.accounts = list(accounts)
        self.skipped: list[tuple[Account, str]] = []
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self.markets: dict[str, GmxMarket | None] = {}  #: learned from positions; None until getMarket answered
        self.feeds: dict[str, tuple[str, int]] = {}  #: token -> (feed, multiplier), re-read every check
        self.decimals: dict[str, int] = {}  #: token -> decimals, learned once
        self.prices: dict[str, int] = {}  #: the previous check's prices, passed to getAccountPositionInfoList
        self.account_markets: dict[str, tuple[str, ...]] = {}
        self._plan: list[tuple[Any, ...]] = []
        self._calls: list[Call] = []
        self._planned_for: Any = None

    # --- planning

    def _tokens(self) -> list[str]:
        out: dict[str, None] = {}
        for m in self.markets.values():
            if m is not None:
                out.update(dict.fromkeys((m.index, m.long, m.short)))
        return list(out)

    def _add(self, tag: tuple[Any, ...], target: str, data: bytes, gas: int = 30_000) -> None:
        self._plan.append(tag)
        self._calls.append(Call(target, data, gas))

    def _uint(self, key: bytes) -> None:
        tag = ("uint", key)
        if tag not in self._plan:
            self._add(tag, self.data_store, DATA_STORE.getUint.encode(_word(key)))

    def calls(self) -> list[Call]:
        """This round's reads; the same list while nothing new was learned and prices are unchanged."""
        state = (
            tuple(self.markets.items()),
            tuple(self.feeds.items()),
            tuple(self.decimals.items()),
            tuple(self.prices.items()),
            tuple(self.account_markets.items()),
        )
        if state == self._planned_for:
            return self._calls
        self._planned_for = state
        self._plan, self._calls = [], []
        ds = self.data_store
        for acct in self.accounts:
            self._add(
                ("positions", acct.address),
                self.reader,
                READER.getAccountPositions.encode(ds, acct.address, 0, MAX_POSITIONS),
                200_000,
            )
        for m, info in self.markets.items():
            if info is None:
                self._add(("market", m), self.reader, READER.getMarket.encode(ds, m), 50_000)
        for t in self._tokens():
            self._add(("feed", t), ds, DATA_STORE.getAddress.encode(_word(token_key("PRICE_FEED", t))))
            self._add(("mult", t), ds, DATA_STORE.getUint.encode(_word(token_key("PRICE_FEED_MULTIPLIER", t))))
            if t in self.feeds:
                feed = self.feeds[t][0]
                self._add(("answer", t), feed, FEED.latestRoundData.encode(), 50_000)
                self._uint(token_key("PRICE_FEED_HEARTBEAT_DURATION", t))
                if t not in self.decimals:
                    self._add(("decimals", t), t, ERC20.decimals.encode())
                    self._add(("feed_decimals", t), feed, FEED.decimals.encode())
                    if t.lower() not in self.symbols:
                        self._add(("symbol", t), t, ERC20.symbol.encode())
        self._uint(key_min_collateral_usd())
        for m, info in self.markets.items():
            if info is None:
                continue
            self._uint(market_key("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION", m))
            self._uint(market_key("MIN_COLLATERAL_FACTOR", m))
            self._uint(market_key("MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS", m))
            for token in dict.fromkeys((info.long, info.short)):
                self._uint(pool_amount_key(m, token))
            for is_long in (True, False):
                self._uint(market_key("MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER", m, is_long))
                self._uint(max_pnl_factor_key("MAX_PNL_FACTOR_FOR_TRADERS", m, is_long))
                for collateral in dict.fromkeys((info.long, info.short)):
                    self._uint(open_interest_key(m, collateral, is_long))
                    self._uint(open_interest_in_tokens_key(m, collateral, is_long))
        for acct in self.accounts:
            markets = self.account_markets.get(acct.address, ())
            if not markets or not all(self._prices_known(m) for m in markets):
                continue
            args = [self._market_prices(m) for m in markets]
            data = READER.getAccountPositionInfoList.encode(
                ds, self.referral_storage, acct.address, list(markets), args, ZERO, 0, MAX_POSITIONS
            )
            self._add(("info", acct.address), self.reader, data, 3_000_000)
        return self._calls

    def _prices_known(self, market: str) -> bool:
        info = self.markets.get(market)
        return info is not None and all(t in self.prices for t in (info.index, info.long, info.short))

    def _market_prices(self, market: str) -> tuple[tuple[int, int], ...]:
        info = self.markets[market]
        assert info is not None
        return tuple((self.prices[t], self.prices[t]) for t in (info.index, info.long, info.short))

    # --- parsing

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        learned = False
        positions: dict[str, list[tuple[Any, ...]]] = {}
        for acct in self.accounts:
            ok, data = got[("positions", acct.address)]
            if not ok:
                raise ReadError(f"{self.protocol}/{self.chain}: getAccountPositions({acct.address}) reverted")
            [rows] = READER.getAccountPositions.decode(data)
            positions[acct.address] = list(rows)
            markets = tuple(dict.fromkeys(to_checksum_address(r[0][1]) for r in rows))
            for m in markets:
                if m not in self.markets:
                    self.markets[m] = None
                    learned = True
            if markets != self.account_markets.get(acct.address, ()):
                self.account_markets[acct.address] = markets
                learned = True
        for tag in self._plan:
            if tag[0] == "market":
                ok, data = got[tag]
                if not ok:
                    raise ReadError(f"{self.protocol}/{self.chain}: getMarket({tag[1]}) reverted")
                w = self._required(got, tag, 4)
                self.markets[tag[1]] = GmxMarket(*(address_word(x) for x in w[:4]))
                learned = True
        # Feeds can be re-registered by GMX's config keeper: a changed feed or multiplier is learned again.
        broken: dict[str, str] = {}
        for t in self._tokens():
            if ("feed", t) not in got:
                learned = True
                continue
            feed = address_word(self._required(got, ("feed", t), 1)[0])
            [mult] = self._required(got, ("mult", t), 1)
            if feed == ZERO or mult == 0:
                broken[t] = "no Chainlink feed registered in the DataStore"
                continue
            if self.feeds.get(t) != (feed, mult):
                self.feeds[t] = (feed, mult)
                self.decimals.pop(t, None)
                learned = True
                continue
            if ("symbol", t) in got:
                # synthetic index tokens (BTC on Arbitrum) have no code: their address prefix is shown instead
                self.symbols[t.lower()] = symbol_or_prefix(*got[("symbol", t)], t)
            if ("decimals", t) in got:
                ok, data = got[("decimals", t)]
                if ok and len(data) >= 32 and words(data)[0] <= 36:
                    self.decimals[t] = words(data)[0]
                else:
                    # Synthetic index tokens (e.g. BTC on Arbitrum) are bare addresses: the multiplier encodes them.
                    [fdec] = self._required(got, ("feed_decimals", t), 1)
                    self.decimals[t] = _decimals_from_multiplier(mult, fdec)
                learned = True
        now: dict[str, int] = {}
        for t in self._tokens():
            if t in broken or ("answer", t) not in got:
                continue
            ok, data = got[("answer", t)]
            if not ok or len(data) < 160:
                broken[t] = "latestRoundData reverted"
                continue
            answer, updated = _signed(words(data)[1]), words(data)[3]
            if answer <= 0:
                broken[t] = f"feed answered {answer}"
                continue
            [heartbeat] = self._required(got, ("uint", token_key("PRICE_FEED_HEARTBEAT_DURATION", t)), 1)
            if block.timestamp > updated and block.timestamp - updated > heartbeat:
                broken[t] = f"feed not updated for {block.timestamp - updated}s (heartbeat {heartbeat}s)"
                continue
            now[t] = answer * self.feeds[t][1] // FLOAT  # Precision.mulDiv(price, multiplier, FLOAT_PRECISION)
        # Not `or not self.prices`: an account with no positions has no tokens, so no prices, and must still read.
        if learned:
            self.prices.update(now)
            return None
        params = self._market_params(got)
        [min_usd] = self._required(got, ("uint", key_min_collateral_usd()), 1)
        self.skipped = []
        out = []
        for acct in self.accounts:
            rows = positions[acct.address]
            need: set[str] = set()
            for r in rows:
                m = self.markets[to_checksum_address(r[0][1])]
                assert m is not None  # every market of a position was learned before this round
                need.update((m.index, m.long, m.short))
            bad = sorted(t for t in need if t in broken or t not in now)
            if bad:
                why = "; ".join(f"{t}: {broken.get(t, 'no price')}" for t in bad)
                self.skipped.append((acct, f"{self.protocol}/{self.chain}: {why}"))
                continue
            infos: list[tuple[Any, ...]] = []
            if rows:
                tag = ("info", acct.address)
                if tag not in got:
                    self.prices.update(now)
                    return None
                ok, data = got[tag]
                if not ok:
                    raise ReadError(
                        f"{self.protocol}/{self.chain}: getAccountPositionInfoList({acct.address}) reverted"
                    )
                [infos] = READER.getAccountPositionInfoList.decode(data)
            out.append(self._position(acct, rows, list(infos), now, params, min_usd, block))
        self.prices.update(now)
        return out

    def _market_params(self, got: dict[tuple[Any, ...], tuple[bool, bytes]]) -> dict[str, MarketParams]:
        out = {}
        for m, info in self.markets.items():
            assert info is not None

            def u(key: bytes) -> int:
                return self._required(got, ("uint", key), 1)[0]

            divisor = 2 if info.long == info.short else 1
            oi = {
                side: sum(u(open_interest_key(m, c, side)) // divisor for c in (info.long, info.short))
                for side in (True, False)
            }
            oi_tokens = {
                side: sum(u(open_interest_in_tokens_key(m, c, side)) // divisor for c in (info.long, info.short))
                for side in (True, False)
            }
            out[m] = MarketParams(
                u(market_key("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION", m)),
                u(market_key("MIN_COLLATERAL_FACTOR", m)),
                u(market_key("MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS", m)),
                u(market_key("MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER", m, True)),
                u(market_key("MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER", m, False)),
                oi[True],
                oi[False],
                oi_tokens[True],
                oi_tokens[False],
                u(pool_amount_key(m, info.long)) // divisor,
                u(pool_amount_key(m, info.short)) // divisor,
                u(max_pnl_factor_key("MAX_PNL_FACTOR_FOR_TRADERS", m, True)),
                u(max_pnl_factor_key("MAX_PNL_FACTOR_FOR_TRADERS", m, False)),
            )
        return out

    def _symbol(self, token: str) -> str:
        return self.symbols.get(token.lower(), token[:8])

    def _position(
        self,
        acct: Account,
        rows: list[tuple[Any, ...]],
        infos: list[tuple[Any, ...]],
        prices: dict[str, int],
        params: dict[str, MarketParams],
        min_usd: int,
        block: BlockRef,
    ) -> Position:
        by_key = {bytes(i[0]): i for i in infos}
        if len(by_key) != len(rows):
            raise ReadError(f"{self.protocol}/{self.chain}: {len(rows)} positions but {len(infos)} position infos")
        sims, legs, colls = [], [], []
        for r in rows:
            (account, market, collateral), numbers, (is_long,) = r
            market, collateral = to_checksum_address(market), to_checksum_address(collateral)
            key = position_key(to_checksum_address(account), market, collateral, is_long)
            info = by_key.get(key)
            if info is None:
                raise ReadError(f"{self.protocol}/{self.chain}: no position info for {key.hex()}")
            if tuple(info[1][1]) != tuple(numbers):
                raise ReadError(f"{self.protocol}/{self.chain}: position {key.hex()} differs between the two reads")
            m = self.markets[market]
            assert m is not None
            mp = params[market]
            fees, execution = info[2], info[3]
            referral, pro, funding, borrowing = fees[0], fees[1], fees[2], fees[3]
            size_usd, size_tokens, coll_amount, pending_impact = numbers[0], numbers[1], numbers[2], numbers[3]
            # getCachedTokenPrice: long token, then short token, then index token.
            ctoken = collateral
            pool_token = m.long if is_long else m.short
            sim = GmxPositionSim(
                is_long=is_long,
                size_usd=size_usd,
                size_tokens=size_tokens,
                collateral_amount=coll_amount,
                pending_impact_amount=pending_impact,
                index_token=m.index,
                collateral_token=ctoken,
                index_price=prices[m.index],
                collateral_price=prices[ctoken],
                price_impact_usd=execution[0],
                position_fee_factor=fees[7],
                pro_discount_factor=pro[1] if pro[0] > 0 else 0,
                referral_discount_factor=referral[6] if bytes(referral[0]) != b"\0" * 32 else 0,
                borrowing_fee_usd=borrowing[0],
                funding_fee_amount=funding[0],
                max_impact_factor_for_liquidations=mp.max_impact_factor_for_liquidations,
                min_collateral_factor=mp.min_collateral_factor_for_liquidation,
                min_collateral_usd=min_usd,
                pool_token=pool_token,
                pool_token_price=prices[pool_token],
                pool_amount=mp.pool_amount_long if is_long else mp.pool_amount_short,
                open_interest_usd=mp.open_interest_long if is_long else mp.open_interest_short,
                open_interest_tokens=mp.open_interest_tokens_long if is_long else mp.open_interest_tokens_short,
                max_pnl_factor=mp.max_pnl_factor_long if is_long else mp.max_pnl_factor_short,
            )
            sims.append(sim)
            legs.append(self._leg(sim, m, mp, key))
            cdec = self.decimals[ctoken]
            colls.append(
                Leg(
                    ctoken,
                    self._symbol(ctoken),
                    cdec,
                    coll_amount,
                    sim.collateral_price * 10**cdec,
                    coll_amount * sim.collateral_price,
                    BPS,
                )
            )
        acc = GmxAccountSim(tuple(sims))
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=acct.address,
            label=acct.label,
            collateral=tuple(colls),
            debt=(),
            health=acc.health(),
            liquidatable=acc.liquidatable(),
            base_unit=FLOAT,
            base_currency="USD",
            block=block,
            details={"reader": self.reader, "data_store": self.data_store, "positions": len(sims)},
            simulator=acc,
            perps=tuple(legs),
        )

    def _leg(self, sim: GmxPositionSim, m: GmxMarket, mp: MarketParams, key: bytes) -> PerpLeg:
        dec = self.decimals[m.index]
        unit = 10**dec
        notional = sim.size_tokens * sim.index_price
        req = sim.requirement()
        lp = sim.liquidation_index_price()
        multiplier = mp.oi_multiplier_long if sim.is_long else mp.oi_multiplier_short
        oi_factor = apply_factor(mp.open_interest_long if sim.is_long else mp.open_interest_short, multiplier)
        fees = sim.fee_amounts()
        return PerpLeg(
            market=f"{self._symbol(m.index)}/USD [{self._symbol(m.long)}-{self._symbol(m.short)}]",
            size=sim.size_tokens if sim.is_long else -sim.size_tokens,
            size_decimals=dec,
            # PerpLeg prices: whole USD per whole token, from USD*1e30 per token base unit
            entry_price=Fraction(sim.size_usd * unit, sim.size_tokens * FLOAT) if sim.size_tokens else Fraction(0),
            mark_price=Fraction(sim.index_price * unit, FLOAT),
            notional=notional,
            requirement=req,
            rate=Fraction(req, notional) if notional else Fraction(sim.min_collateral_factor, FLOAT),
            margin_mode="isolated",
            tier=None,
            equity=sim.remaining(),
            liquidation_price=None if lp is None else Fraction(lp * unit, FLOAT),
            venue_liquidation_price=None,
            liquidation_tier=None,
            details={
                "position_key": "0x" + key.hex(),
                "market_token": m.market,
                "collateral_token": sim.collateral_token,
                "reason": sim.reason(),
                "pnl_usd": sim.pnl(),
                "uncapped_pnl_usd": sim.uncapped_pnl(),
                "pool_pnl_usd": sim.pool_pnl(),
                "max_pool_pnl_usd": sim.max_pool_pnl(),
                "price_impact_usd": sim.impact(),
                "pending_borrowing_fee_usd": sim.borrowing_fee_usd,
                "pending_funding_fee_amount": sim.funding_fee_amount,
                "close_fee_amounts": fees,
                "min_collateral_usd": sim.min_collateral_usd,
                "min_collateral_usd_for_leverage": sim.min_collateral_usd_for_leverage(),
                "min_collateral_factor_for_liquidation": sim.min_collateral_factor,
                "min_collateral_factor": mp.min_collateral_factor,
                "min_collateral_factor_for_open_interest": oi_factor,
                # What an increase of this position must keep (willPositionCollateralBeSufficient), not liquidation.
                "open_requirement_usd": apply_factor(sim.size_usd, max(mp.min_collateral_factor, oi_factor)),
                "pnl_capped_by_pool": sim.pnl() != sim.uncapped_pnl(),
            },
        )


def make_reader(dep: Any, accounts: Sequence[Account]) -> GmxV2Reader:
    """A reader for one resolved deployment: dep.address is the Reader, dep.extra holds data_store (and referral)."""
    extra = dict(getattr(dep, "extra", {}) or {})
    if "data_store" not in extra:
        raise ValueError(f"{dep.name}: gmx_v2 needs extra.data_store (the DataStore address)")
    return GmxV2Reader(
        dep.name,
        dep.chain,
        dep.address,
        extra["data_store"],
        accounts,
        referral_storage=extra.get("referral_storage", ZERO),
    )


register(ChainProtocol("gmx_v2", "reader", make_reader))
