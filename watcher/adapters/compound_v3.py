"""Compound v3 (Comet) adapter: raw market and account state in one batch, `isLiquidatable` replayed exactly.

A check reads, at one pinned block: numAssets, getAssetInfo(i) for each asset, getPrice for the base feed and every
collateral feed, totalsBasic, baseScale, baseToken and baseTokenPriceFeed; per account: userBasic and userCollateral
for each asset. Health follows Comet's own integer rounding (CometMainInterface `isLiquidatable`):
liquidity = sum over assetsIn of floor(floor(balance*price/scale) * liquidateCollateralFactor / 1e18)
            - floor(floor(|principal| * baseBorrowIndex / 1e15) * basePrice / baseScale),
liquidatable iff liquidity < 0, with the STORED baseBorrowIndex (isLiquidatable does not accrue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import Contract, words
from watcher.adapters.base import Account, Call, TaggedReader
from watcher.model import BPS, WAD, BlockRef, Leg, Position

COMET = Contract("IComet")
FACTOR_SCALE = 10**18
BASE_INDEX_SCALE = 10**15
PRICE_SCALE = 10**8  #: getPrice answers in USD with 8 decimals
_CHEAP, _PRICE = 10_000, 30_000


def _signed(w: int) -> int:
    """A 32-byte ABI word as a two's complement integer (int104 arrives sign-extended)."""
    return w - (1 << 256) if w >> 255 else w


def _decimals(scale: int) -> int:
    """Token decimals from Comet's scale (10**decimals)."""
    d = len(str(scale)) - 1
    if scale <= 0 or 10**d != scale:
        raise ValueError(f"scale {scale} is not a power of ten")
    return d


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
    """Exact replay of Comet's `isLiquidatable` for one account, with prices or balances changed."""

    base_token: str
    base_scale: int
    base_price: int
    base_supply_index: int
    base_borrow_index: int
    assets: tuple[CometAsset, ...]
    prices: tuple[int, ...]  #: getPrice of each asset's feed, aligned with `assets`
    principal: int
    balances: tuple[int, ...]  #: userCollateral balance of each asset, aligned with `assets`
    assets_in: int
    now: int

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
        """The same position later; the stored index is kept because isLiquidatable itself never accrues.

        absorb() accrues first, so a later absorb would see slightly more debt; the verdict this predicts is the
        one isLiquidatable gives until the next accrual (any supply/borrow/withdraw on the market).
        """
        return replace(self, now=timestamp)

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
        return replace(self, principal=principal)


class CompoundV3Reader(TaggedReader):
    """Reads one Comet market for a set of accounts, in one batch per check."""

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
        # Comet has no token metadata of its own; symbols are for display only, the address prefix otherwise.
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        # Governance can add assets or move feeds (an upgrade), so the list is re-read every check; a round that
        # finds it changed asks again at the same block.
        self.num_assets: int | None = None
        self.infos: tuple[CometAsset, ...] = ()
        self.base_feed: str | None = None
        self._plan: list[tuple[Any, ...]] = []
        self._calls: list[Call] = []
        self._planned_for: tuple[Any, ...] | None = None

    def _add(self, tag: tuple[Any, ...], data: bytes, gas: int = _CHEAP) -> None:
        self._plan.append(tag)
        self._calls.append(Call(self.comet, data, gas))

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        key = (self.num_assets, self.infos, self.base_feed)
        if key == self._planned_for:
            return self._calls
        self._planned_for = key
        self._plan, self._calls = [], []
        for tag, data in (
            (("num",), COMET.numAssets.encode()),
            (("totals",), COMET.totalsBasic.encode()),
            (("scale",), COMET.baseScale.encode()),
            (("base",), COMET.baseToken.encode()),
            (("feed",), COMET.baseTokenPriceFeed.encode()),
        ):
            self._add(tag, data)
        for i in range(self.num_assets or 0):
            self._add(("info", i), COMET.getAssetInfo.encode(i))
        if self.base_feed is None or len(self.infos) != self.num_assets:
            return self._calls  # the feeds and assets are known only after the first round
        for feed in dict.fromkeys([self.base_feed, *(a.price_feed for a in self.infos)]):
            self._add(("price", feed), COMET.getPrice.encode(feed), _PRICE)
        for acct in self.accounts:
            self._add(("user", acct.address), COMET.userBasic.encode(acct.address))
            for a in self.infos:
                self._add(("coll", acct.address, a.asset), COMET.userCollateral.encode(acct.address, a.asset))
        return self._calls

    @staticmethod
    def _address(w: int) -> str:
        if w >> 160:
            raise ValueError("word holds a non-address")
        return to_checksum_address(w.to_bytes(20, "big"))

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        [num] = self._required(got, ("num",), 1)
        base_feed = self._address(self._required(got, ("feed",), 1)[0])
        infos = []
        for i in range(min(num, self.num_assets or 0)):
            w = self._required(got, ("info", i), 8)
            infos.append(CometAsset(w[0], self._address(w[1]), self._address(w[2]), w[3], w[4], w[5], w[6]))
        learned = (num, tuple(infos), base_feed)
        if learned != (self.num_assets, self.infos, self.base_feed) or len(infos) != num:
            self.num_assets, self.infos, self.base_feed = learned
            return None
        totals = self._required(got, ("totals",), 8)
        [base_scale] = self._required(got, ("scale",), 1)
        base_token = self._address(self._required(got, ("base",), 1)[0])
        self.skipped = []
        prices: dict[str, int] = {}
        broken = []
        for feed in dict.fromkeys([base_feed, *(a.price_feed for a in self.infos)]):
            ok, data = got[("price", feed)]
            if not ok or len(data) < 32:
                broken.append(feed)
            else:
                prices[feed] = words(data)[0]
        if broken:
            # isLiquidatable reverts too while a feed does; these accounts are unknown, not healthy.
            for acct in self.accounts:
                self.skipped.append((acct, f"{self.protocol}/{self.chain}: getPrice reverted for {broken}"))
            return []
        out = []
        for acct in self.accounts:
            user = self._required(got, ("user", acct.address), 5)
            balances = tuple(self._required(got, ("coll", acct.address, a.asset), 1)[0] for a in self.infos)
            sim = CometSimulator(
                base_token=base_token,
                base_scale=base_scale,
                base_price=prices[base_feed],
                base_supply_index=totals[0],
                base_borrow_index=totals[1],
                assets=self.infos,
                prices=tuple(prices[a.price_feed] for a in self.infos),
                principal=_signed(user[0]),
                balances=balances,
                assets_in=user[3],
                now=block.timestamp,
            )
            out.append(self._position(acct, sim, block))
        return out

    def _symbol(self, token: str) -> str:
        return self.symbols.get(token.lower(), token[:8])

    def _position(self, acct: Account, sim: CometSimulator, block: BlockRef) -> Position:
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
                "comet": self.comet,
                "principal": sim.principal,
                "base_borrow_index": sim.base_borrow_index,
                "assets_in": sim.assets_in,
                "weighted_collateral": sim.weighted(),
            },
            simulator=sim,
        )
