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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address
from pydantic import Field

from watcher.abi import Contract, address_word, symbol_or_prefix, words
from watcher.adapters.base import Account, Call, TaggedReader
from watcher.config import ConfigError, ProtocolOptions, Where
from watcher.model import BPS, WAD, BlockRef, Leg, Position
from watcher.registry import ChainProtocol, Entry, register

if TYPE_CHECKING:  # config imports the chain layer; the adapter needs the type only
    from watcher.config import Deployment

COMET = Contract("IComet")
ERC20 = Contract("IERC20Metadata")
FACTOR_SCALE = 10**18
BASE_INDEX_SCALE = 10**15
PRICE_SCALE = 10**8  #: getPrice answers in USD with 8 decimals
PAUSE_ABSORB_OFFSET = 3  #: bit of totalsBasic.pauseFlags that pauses absorb
_UINT64_MAX = 2**64 - 1
_CHEAP, _PRICE = 10_000, 30_000
#: the rate-model views, in CometRates field order
RATE_VIEWS = (
    "supplyKink",
    "supplyPerSecondInterestRateSlopeLow",
    "supplyPerSecondInterestRateSlopeHigh",
    "supplyPerSecondInterestRateBase",
    "borrowKink",
    "borrowPerSecondInterestRateSlopeLow",
    "borrowPerSecondInterestRateSlopeHigh",
    "borrowPerSecondInterestRateBase",
)


def _signed(w: int) -> int:
    """A 32-byte ABI word as a two's complement integer (int104 arrives sign-extended)."""
    return w - (1 << 256) if w >> 255 else w


def _decimals(scale: int) -> int:
    """Token decimals from Comet's scale (10**decimals)."""
    d = len(str(scale)) - 1
    if scale <= 0 or 10**d != scale:
        raise ValueError(f"scale {scale} is not a power of ten")
    return d


def _safe64(n: int) -> int:
    """CometMath.safe64: Comet reverts (InvalidUInt64) past uint64; so do we, as a malformed state."""
    if n > _UINT64_MAX:
        raise ValueError(f"{n} overflows uint64, Comet's safe64 would revert")
    return n


@dataclass(frozen=True, slots=True)
class CometRates:
    """Comet's kinked rate model, per second at 1e18 (the values its rate views answer)."""

    supply_kink: int = 0
    supply_slope_low: int = 0
    supply_slope_high: int = 0
    supply_base: int = 0
    borrow_kink: int = 0
    borrow_slope_low: int = 0
    borrow_slope_high: int = 0
    borrow_base: int = 0

    @staticmethod
    def _rate(u: int, kink: int, low: int, high: int, base: int) -> int:
        if u <= kink:
            return _safe64(base + low * u // FACTOR_SCALE)
        return _safe64(base + low * kink // FACTOR_SCALE + high * (u - kink) // FACTOR_SCALE)

    def supply_rate(self, u: int) -> int:
        """getSupplyRate(utilization): base + mulFactor(slopeLow, u), plus mulFactor(slopeHigh, u - kink) above it."""
        return self._rate(u, self.supply_kink, self.supply_slope_low, self.supply_slope_high, self.supply_base)

    def borrow_rate(self, u: int) -> int:
        """getBorrowRate(utilization), the same shape with the borrow parameters."""
        return self._rate(u, self.borrow_kink, self.borrow_slope_low, self.borrow_slope_high, self.borrow_base)


def utilization(supply_index: int, borrow_index: int, total_supply_base: int, total_borrow_base: int) -> int:
    """getUtilization: floor(presentValueBorrow * 1e18 / presentValueSupply), 0 when nothing is supplied."""
    supply = total_supply_base * supply_index // BASE_INDEX_SCALE
    borrow = total_borrow_base * borrow_index // BASE_INDEX_SCALE
    return borrow * FACTOR_SCALE // supply if supply else 0


def accrued_indices(
    rates: CometRates, supply_index: int, borrow_index: int, total_supply_base: int, total_borrow_base: int, dt: int
) -> tuple[int, int]:
    """accruedInterestIndices(dt): both indexes grown by floor(index * rate * dt / 1e18), one utilization for all dt."""
    if dt <= 0:
        return supply_index, borrow_index
    u = utilization(supply_index, borrow_index, total_supply_base, total_borrow_base)
    supply = supply_index + _safe64(supply_index * (rates.supply_rate(u) * dt) // FACTOR_SCALE)
    borrow = borrow_index + _safe64(borrow_index * (rates.borrow_rate(u) * dt) // FACTOR_SCALE)
    return _safe64(supply), _safe64(borrow)


@dataclass(frozen=True, slots=True)
class CometAsset:
    """One collateral asset as getAssetInfo answers it (factors at 1e18 scale)."""

    offset: int
    asset: str
    price_feed: str
    scale: int
    borrow_cf: int
    liquidate_cf: int
    liquidation_factor: int


@dataclass(frozen=True, slots=True)
class CometSimulator:
    """Exact replay of Comet's `isLiquidatable` for one account, with prices, balances or time changed.

    The indexes are those of the market's state: as stored at the read (isLiquidatable's), or accrued by `at_time`
    (what absorb, or any transaction that accrues first, sees at that time).
    """

    base_token: str
    base_scale: int
    base_price: int
    base_supply_index: int
    base_borrow_index: int
    assets: tuple[CometAsset, ...]
    prices: tuple[int, ...]  #: getPrice of each asset's feed, aligned with `assets`
    principal: int
    balances: tuple[int, ...]  #: userCollateral balance of each asset, aligned with `assets`
    assets_in: int  #: userBasic.assetsIn, with bits 16-23 from _reserved (CometWithExtendedAssetList)
    now: int
    rates: CometRates = CometRates()
    total_supply_base: int = 0
    total_borrow_base: int = 0
    #: the time the indexes are accrued to (totalsBasic.lastAccrualTime as read; later after at_time)
    last_accrual: int = 0

    def debt(self) -> int:
        """presentValueBorrow: floor(|principal| * baseBorrowIndex / 1e15); 0 for a supplier."""
        return -self.principal * self.base_borrow_index // BASE_INDEX_SCALE if self.principal < 0 else 0

    def debt_value(self) -> int:
        """The debt in USD (8 decimals): floor(debt * basePrice / baseScale), as signedMulPrice truncates."""
        return self.debt() * self.base_price // self.base_scale

    def collateral_value(self, i: int) -> int:
        """mulPrice: floor(balance * price / scale) of asset i."""
        return self.balances[i] * self.prices[i] // self.assets[i].scale

    def weighted(self) -> int:
        """Sum over assetsIn of mulFactor(value, liquidateCollateralFactor), each floored as Comet does."""
        total = 0
        for i, a in enumerate(self.assets):
            if self.assets_in >> a.offset & 1:
                total += self.collateral_value(i) * a.liquidate_cf // FACTOR_SCALE
        return total

    def borrow_weighted(self) -> int:
        """The same sum with borrowCollateralFactor: isBorrowCollateralized's side (the initial weight)."""
        total = 0
        for i, a in enumerate(self.assets):
            if self.assets_in >> a.offset & 1:
                total += self.collateral_value(i) * a.borrow_cf // FACTOR_SCALE
        return total

    def liquidatable(self) -> bool:
        """Comet's verdict: principal < 0 and liquidity < 0, i.e. weighted collateral strictly below debt value."""
        return self.principal < 0 and self.weighted() < self.debt_value()

    def health(self) -> int | None:
        """floor(weighted * 1e18 / debtValue); None without debt (or with a debt worth 0, which is never liquidatable).

        Rounding down keeps the verdict exact: health < 1e18 iff weighted < debtValue iff isLiquidatable.
        """
        dv = self.debt_value()
        if self.principal >= 0 or dv == 0:
            return None
        return self.weighted() * WAD // dv

    def at_time(self, timestamp: int) -> CometSimulator:
        """The market accrued to `timestamp` as accrueInternal would: one step from `last_accrual`.

        With no transaction on the market in between, the contract accrues in one step from lastAccrualTime, so this
        is what absorb (or any accruing call) sees at `timestamp`. An earlier time leaves the indexes as they are.
        """
        if timestamp <= self.last_accrual:
            return replace(self, now=timestamp)
        supply, borrow = accrued_indices(
            self.rates,
            self.base_supply_index,
            self.base_borrow_index,
            self.total_supply_base,
            self.total_borrow_base,
            timestamp - self.last_accrual,
        )
        return replace(self, base_supply_index=supply, base_borrow_index=borrow, last_accrual=timestamp, now=timestamp)

    def with_price(self, asset: str, price: int) -> CometSimulator:
        """Replace the oracle price of a collateral asset or of the base token."""
        out = self
        if asset.lower() == self.base_token.lower():
            out = replace(out, base_price=price)
        for i, a in enumerate(self.assets):
            if a.asset.lower() == asset.lower():
                out = replace(out, prices=(*out.prices[:i], price, *out.prices[i + 1 :]))
        return out

    def with_supply(self, asset: str, amount: int) -> CometSimulator:
        """After supply(asset, amount): collateral adds to the balance and assetsIn; base supply repays debt."""
        if asset.lower() == self.base_token.lower():
            return self.with_repay(asset, amount)
        for i, a in enumerate(self.assets):
            if a.asset.lower() == asset.lower():
                balances = (*self.balances[:i], self.balances[i] + amount, *self.balances[i + 1 :])
                assets_in = self.assets_in | (1 << a.offset) if balances[i] else self.assets_in
                return replace(self, balances=balances, assets_in=assets_in)
        raise ValueError(f"{asset} is not an asset of this market")

    def with_repay(self, asset: str, amount: int) -> CometSimulator:
        """After supplying `amount` base: principal = principalValue(presentValue + amount), with Comet's rounding."""
        if asset.lower() != self.base_token.lower():
            raise ValueError(f"{asset} is not this market's base token")
        if self.principal >= 0:
            present = self.principal * self.base_supply_index // BASE_INDEX_SCALE + amount
        else:
            present = -self.debt() + amount
        if present >= 0:
            principal = present * BASE_INDEX_SCALE // self.base_supply_index  # principalValueSupply rounds down
        else:
            # principalValueBorrow rounds up, so the remaining debt never shrinks by rounding.
            principal = -((-present * BASE_INDEX_SCALE + self.base_borrow_index - 1) // self.base_borrow_index)
        # repayAndSupplyAmount: the totals move too, so a later accrual sees the new utilization.
        old = self.principal
        if principal <= 0:
            repaid, supplied = principal - old, 0
        elif old >= 0:
            repaid, supplied = 0, principal - old
        else:
            repaid, supplied = -old, principal
        return replace(
            self,
            principal=principal,
            total_supply_base=self.total_supply_base + supplied,
            # Never below 0: only a hand-built simulator without market totals gets there.
            total_borrow_base=max(0, self.total_borrow_base - repaid),
        )


class CompoundV3Reader(TaggedReader):
    """Reads one Comet market for a set of accounts, in one batch per check."""

    _gas = _CHEAP

    def __init__(
        self,
        protocol: str,
        chain: str,
        comet_address: str,
        accounts: Sequence[Account],
        symbols: Mapping[str, str] | None = None,
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.comet = to_checksum_address(comet_address)
        self.accounts = list(accounts)
        #: accounts the last parse could not value (a reverting price feed), with the reason
        self.skipped: list[tuple[Account, str]] = []
        # Symbols are for display only: given ones win, then the token's own symbol(), else the address prefix. Each
        # token is asked once (a check that learns them needs no extra round; the next one simply asks less).
        self.given_symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self.symbols: dict[str, str] = {}
        # Governance can add assets or move feeds (an upgrade), so the list is re-read every check; a round that
        # finds it changed asks again at the same block.
        self.num_assets: int | None = None
        self.infos: tuple[CometAsset, ...] = ()
        self.base_feed: str | None = None
        self.base_token: str | None = None

    def _unnamed(self) -> tuple[str, ...]:
        """Tokens whose symbol is still to be read."""
        tokens = [self.base_token, *(a.asset for a in self.infos)] if self.base_token else []
        known = self.symbols.keys() | self.given_symbols.keys()
        return tuple(t for t in dict.fromkeys(tokens) if t is not None and t.lower() not in known)

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        ready = self.base_feed is not None and len(self.infos) == self.num_assets
        unnamed = self._unnamed() if ready else ()
        key = (self.num_assets, self.infos, self.base_feed, self.base_token, unnamed)
        if not self._replan(key):
            return self._calls
        for tag, data in (
            (("num",), COMET.numAssets.encode()),
            (("totals",), COMET.totalsBasic.encode()),
            (("scale",), COMET.baseScale.encode()),
            (("base",), COMET.baseToken.encode()),
            (("feed",), COMET.baseTokenPriceFeed.encode()),
        ):
            self._add(tag, self.comet, data)
        for i in range(self.num_assets or 0):
            self._add(("info", i), self.comet, COMET.getAssetInfo.encode(i))
        if not ready:
            return self._calls  # the feeds and assets are known only after the first round
        # Immutables in a Comet implementation, but an upgrade swaps the implementation: read every check.
        for view in RATE_VIEWS:
            self._add(("rate", view), self.comet, getattr(COMET, view).encode())
        for token in unnamed:
            self._add(("sym", token), token, ERC20.symbol.encode(), _PRICE)
        assert self.base_feed is not None
        for feed in dict.fromkeys([self.base_feed, *(a.price_feed for a in self.infos)]):
            self._add(("price", feed), self.comet, COMET.getPrice.encode(feed), _PRICE)
        for acct in self.accounts:
            self._add(("user", acct.address), self.comet, COMET.userBasic.encode(acct.address))
            for a in self.infos:
                self._add(
                    ("coll", acct.address, a.asset), self.comet, COMET.userCollateral.encode(acct.address, a.asset)
                )
        return self._calls

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        [num] = self._required(got, ("num",), 1)
        base_feed = address_word(self._required(got, ("feed",), 1)[0])
        base_token = address_word(self._required(got, ("base",), 1)[0])
        infos = []
        for i in range(min(num, self.num_assets or 0)):
            w = self._required(got, ("info", i), 8)
            infos.append(CometAsset(w[0], address_word(w[1]), address_word(w[2]), w[3], w[4], w[5], w[6]))
        learned = (num, tuple(infos), base_feed, base_token)
        if learned != (self.num_assets, self.infos, self.base_feed, self.base_token) or len(infos) != num:
            self.num_assets, self.infos, self.base_feed, self.base_token = learned
            return None
        totals = self._required(got, ("totals",), 8)
        [base_scale] = self._required(got, ("scale",), 1)
        rates = CometRates(*(self._required(got, ("rate", view), 1)[0] for view in RATE_VIEWS))
        for tag, (ok, data) in got.items():
            if tag[0] == "sym":
                # Never an error: a token without a readable symbol is shown by its address prefix.
                self.symbols[tag[1].lower()] = symbol_or_prefix(ok, data, tag[1])
        self.skipped = []
        prices: dict[str, int] = {}
        broken = []
        for feed in dict.fromkeys([base_feed, *(a.price_feed for a in self.infos)]):
            ok, data = got[("price", feed)]
            if not ok or len(data) < 32:
                broken.append(feed)
            else:
                prices[feed] = words(data)[0]
        if base_feed in broken:
            # every check values the debt with the base price: while its feed reverts, everyone is unknown
            for acct in self.accounts:
                self.skipped.append((acct, f"{self.protocol}/{self.chain}: getPrice reverted for the base feed"))
            return []
        absorb_paused = bool(totals[7] >> PAUSE_ABSORB_OFFSET & 1)
        out = []
        for acct in self.accounts:
            user = self._required(got, ("user", acct.address), 5)
            balances = tuple(self._required(got, ("coll", acct.address, a.asset), 1)[0] for a in self.infos)
            held = user[3] | user[4] << 16
            sim = CometSimulator(
                base_token=base_token,
                base_scale=base_scale,
                base_price=prices[base_feed],
                base_supply_index=totals[0],
                base_borrow_index=totals[1],
                assets=self.infos,
                prices=tuple(prices.get(a.price_feed, 0) for a in self.infos),  # 0: a broken feed it does not hold
                principal=_signed(user[0]),
                balances=balances,
                # Markets with more than 16 assets keep bits 16-23 of assetsIn in userBasic._reserved.
                assets_in=held,
                now=block.timestamp,
                rates=rates,
                total_supply_base=totals[4],
                total_borrow_base=totals[5],
                last_accrual=totals[6],
            )
            dead = [a.price_feed for a in self.infos if a.price_feed in broken and held >> a.offset & 1]
            if dead and not comet_decides(sim, set(broken)):
                # isLiquidatable reaches a reverting feed before the account's liquidity is settled: unknown, never
                # healthy (accounts that do not hold that asset, or whose earlier assets settle it, are still valued)
                self.skipped.append((acct, f"{self.protocol}/{self.chain}: getPrice reverted for {dead}"))
                continue
            p = self._position(acct, sim, block, absorb_paused)
            if dead:
                note = (
                    f"getPrice reverts for {dead}: Comet's isLiquidatable stops before it (the assets before it "
                    "already cover the debt), so the verdict stands; health counts only the readable collateral"
                )
                p = replace(p, details={**p.details, "health_lower_bound": True, "note": note})
            out.append(p)
        return out

    def _symbol(self, token: str) -> str:
        t = token.lower()
        return self.given_symbols.get(t) or self.symbols.get(t) or token[:8]

    def _position(self, acct: Account, sim: CometSimulator, block: BlockRef, absorb_paused: bool) -> Position:
        collateral = tuple(
            Leg(
                a.asset,
                self._symbol(a.asset),
                _decimals(a.scale),
                sim.balances[i],
                sim.prices[i],
                sim.collateral_value(i),
                a.liquidate_cf * BPS // FACTOR_SCALE,  # display only; the simulator keeps the exact 1e18 factor
            )
            for i, a in enumerate(sim.assets)
            if sim.balances[i] or sim.assets_in >> a.offset & 1
        )
        base_dec = _decimals(sim.base_scale)
        debt = Leg(sim.base_token, self._symbol(sim.base_token), base_dec, sim.debt(), sim.base_price, sim.debt_value())
        # What absorb() would see in this block: accrueInternal first, then isLiquidatable at the accrued index.
        accrued = sim.at_time(block.timestamp)
        u = utilization(sim.base_supply_index, sim.base_borrow_index, sim.total_supply_base, sim.total_borrow_base)
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=acct.address,
            label=acct.label,
            collateral=collateral,
            debt=(debt,),
            health=sim.health(),
            # Exactly isLiquidatable: principal < 0 and liquidity < 0 (also `health < WAD`, see CometSimulator.health).
            liquidatable=sim.liquidatable(),
            base_unit=PRICE_SCALE,
            base_currency="USD",
            block=block,
            details={
                # Two Comets on one chain are two markets: the key tells them apart.
                "market_id": self.comet.lower(),
                "comet": self.comet,
                "principal": sim.principal,
                "base_borrow_index": sim.base_borrow_index,
                "last_accrual_time": sim.last_accrual,
                "utilization": u,
                "borrow_rate_per_second": sim.rates.borrow_rate(u),
                "accrued_borrow_index": accrued.base_borrow_index,
                "absorb_health": accrued.health(),
                "absorbable_now": accrued.liquidatable() and not absorb_paused,
                "absorb_paused": absorb_paused,
                "assets_in": sim.assets_in,
                "weighted_collateral": sim.weighted(),
                # isBorrowCollateralized: the initial (borrowCollateralFactor) side; False means no further borrowing
                # or withdrawing, not liquidation
                "borrow_collateralized": sim.principal >= 0 or sim.borrow_weighted() >= sim.debt_value(),
                "borrow_weighted_collateral": sim.borrow_weighted(),
            },
            simulator=sim,
        )


def comet_decides(sim: CometSimulator, broken: set[str]) -> bool:
    """Whether Comet's isLiquidatable returns without reading any of the `broken` feeds for this account.

    Its loop goes through the assets in index order and, before reading an asset's price, returns false as soon
    as the liquidity so far (minus the debt's value) is non-negative; a principal >= 0 returns false at once.
    """
    if sim.principal >= 0:
        return True
    liquidity = -sim.debt_value()
    for i, a in sorted(enumerate(sim.assets), key=lambda item: item[1].offset):
        if not sim.assets_in >> a.offset & 1:
            continue
        if liquidity >= 0:
            return True
        if a.price_feed in broken:
            return False
        liquidity += sim.collateral_value(i) * a.liquidate_cf // FACTOR_SCALE
    return True


def make_reader(dep: Deployment, accounts: Sequence[Account]) -> CompoundV3Reader:
    """The reader for one resolved Comet deployment: `dep.address` is the Comet (one market)."""
    return CompoundV3Reader(dep.name, dep.chain, dep.address, accounts)


class CometOptions(ProtocolOptions):
    """Compound v3's own [[deployments]] keys."""

    #: the markets (one Comet per base asset) to watch, by their protocols/ names (USDC, WETH ...); default all
    markets: list[str] = Field(default_factory=list)


def settle(
    options: CometOptions, entries: list[Entry], where: Where
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The Comets named in `markets` (all when none is named); a name the chain has no Comet for is an error."""
    picked = entries
    if options.markets:
        names = {str(v.get("market", "")).upper() for _, v in entries}
        for j, m in enumerate(options.markets):
            if m.upper() not in names:
                raise ConfigError(
                    f"{where.key}.markets[{j}]: no {where.protocol} market {m!r} on chains.{where.chain} "
                    f"(known: {', '.join(sorted(names))})"
                )
        wanted = {m.upper() for m in options.markets}
        picked = [(n, v) for n, v in entries if str(v.get("market", "")).upper() in wanted]
    return [(n, v, {}) for n, v in picked]


register(ChainProtocol("compound_v3", "comet", make_reader, options=CometOptions, settle=settle))
