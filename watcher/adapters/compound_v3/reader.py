"""Comet reader: one market's state and its accounts in one batch per check, parsed into Positions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from watcher.abi import Contract, address_word, symbol_or_prefix, words
from watcher.adapters.base import Account, Call, TaggedReader
from watcher.adapters.compound_v3.math import FACTOR_SCALE, CometRates, _decimals, _signed, utilization
from watcher.adapters.compound_v3.simulator import CometAsset, CometSimulator, comet_decides
from watcher.model import BPS, BlockRef, Leg, Position

if TYPE_CHECKING:  # config imports the chain layer; the adapter needs the type only
    from watcher.config import Deployment

COMET = Contract("IComet")
ERC20 = Contract("IERC20Metadata")
PRICE_SCALE = 10**8  #: getPrice answers in USD with 8 decimals
PAUSE_ABSORB_OFFSET = 3  #: bit of totalsBasic.pauseFlags that pauses absorb
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


def make_reader(dep: Deployment, accounts: Sequence[Account]) -> CompoundV3Reader:
    """The reader for one resolved Comet deployment: `dep.address` is the Comet (one market)."""
    return CompoundV3Reader(dep.name, dep.chain, dep.address, accounts)
