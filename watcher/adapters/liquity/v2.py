"""Liquity v2 (BOLD) adapter: troves by id on every collateral branch, read in one batch, liquidation replayed.

A CollateralRegistry over collateral branches; troves are ERC-721 ids. A check reads the registry
(totalCollaterals, getToken, getTroveManager, boldToken); per branch the TroveManager (borrowerOperations, troveNFT,
shutdownTime, getEntireBranchColl/Debt, getTroveIdsCount, getUnbackedPortionPriceAndRedeemability) and the
BorrowerOperations (MCR, CCR, SCR, hasBeenShutDown: the TroveManager keeps MCR internal, BorrowerOperations and the
AddressesRegistry expose it; the AddressesRegistry is not reachable from the registry on chain); per configured trove
id getTroveStatus on every branch, then getLatestTroveData, Troves (for its interest batch) and TroveNFT.ownerOf
where it lives, and getLatestBatchData of each batch a watched trove is in; per account TroveNFT.balanceOf on every
branch.

The v2 price: the branch PriceFeed is internal in v2's LiquityBase (no view on the TroveManager or BorrowerOperations
gives its address), but getUnbackedPortionPriceAndRedeemability() returns the branch PriceFeed's fetchPrice() (the
very call batchLiquidateTroves makes) and whether the branch TCR >= SCR and it is not shut down; run in eth_call.
Where the config names a WETH branch's PriceFeed (`contracts.eth_usd_price_feed_<i>`) it rides in the positions'
details, for the probability to walk the rounds of that feed's ethUsdOracle.

v2 decision (batchLiquidateTroves): status active or zombie, ICR = floor(entireColl*price/entireDebt) < MCR of the
branch, and not the last trove. There are no Recovery Mode liquidations; a branch whose TCR is below SCR can be shut
down (reported in details). TroveNFT is a plain ERC-721 without enumeration and trove ids are
keccak256(sender, owner, index) with the sender often a zapper, so an owner's troves cannot be listed cheaply: ids come
from the config, and an account whose balanceOf exceeds the configured troves it owns on a branch is reported as
skipped (unknown), never as fully read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from eth_utils import to_checksum_address
from pydantic import Field

from watcher.abi import address_word, symbol_or_prefix, words
from watcher.adapters.base import Account, Call, ReadError, TaggedReader
from watcher.adapters.liquity.common import (
    CHEAP,
    ERC20,
    ONE_YEAR,
    PRICE,
    TROVE,
    V2_BO,
    V2_CR,
    V2_LIVE,
    V2_MIN_DEBT,
    V2_NFT,
    V2_STATUS,
    V2_TM,
    compute_cr,
    word_bool,
)
from watcher.config.errors import ConfigError
from watcher.config.options import ProtocolOptions
from watcher.model import BPS, WAD, BlockRef, Leg, Position
from watcher.registry import ChainProtocol, register


@dataclass(frozen=True, slots=True)
class BatchShare:
    """A trove's part of an interest batch: getLatestBatchData's debt and rates, and the trove's debt shares."""

    recorded: int  #: the batch's recordedDebt
    rate: int  #: annualInterestRate, WAD
    fee: int  #: annualManagementFee, WAD
    updated: int  #: lastDebtUpdateTime
    total_shares: int
    shares: int  #: Troves(id).batchDebtShares
    redist_debt: int  #: the trove's pending redistribution debt, which earns nothing until applied

    def debt_at(self, timestamp: int) -> int:
        """The trove's entireDebt at `timestamp` as v2's _getLatestTroveDataFromBatch computes it (no shutdown)."""
        if self.total_shares == 0:
            return self.redist_debt
        period = max(timestamp - self.updated, 0)
        interest = self.recorded * self.rate * period // ONE_YEAR // WAD
        fee = self.recorded * self.fee * period // ONE_YEAR // WAD
        part = self.total_shares
        return (
            self.recorded * self.shares // part
            + interest * self.shares // part
            + fee * self.shares // part
            + self.redist_debt
        )


@dataclass(frozen=True, slots=True)
class LiquityV2Simulator:
    """Exact replay of v2's batchLiquidateTroves decision for one trove, with the price or the trove changed."""

    token: str  #: the branch's collateral token
    bold: str
    coll: int  #: entireColl
    debt: int  #: entireDebt (recorded + redistribution + accrued interest and batch fee)
    price: int  #: branch fetchPrice, 18 decimals
    mcr: int
    live: bool  #: status active or zombie
    trove_count: int
    weighted_debt: int  #: recordedDebt * annualInterestRate, what accrues per year (x1e18)
    now: int
    shutdown_time: int = 0
    #: a trove in an interest batch: what its debt is computed from, so that time is replayed to the wei
    batch: BatchShare | None = None

    def icr(self) -> int:
        """getCurrentICR at this price."""
        return compute_cr(self.coll, self.debt, self.price)

    def liquidatable(self) -> bool:
        """batchLiquidateTroves([id]) would succeed."""
        return self.live and self.debt > 0 and self.trove_count > 1 and self.icr() < self.mcr

    def health(self) -> int | None:
        """floor(ICR * 1e18 / MCR): below 1e18 exactly when ICR < MCR; None without debt."""
        return None if self.debt == 0 else self.icr() * WAD // self.mcr

    def at_time(self, timestamp: int) -> LiquityV2Simulator:
        """Interest accrued to `timestamp` on the recorded debt (none past a shutdown); in a batch, the batch's
        interest and management fee, the trove's share of each as getLatestTroveData takes it.

        Outside a batch the contract floors the whole period's interest at once and this adds the floored increment,
        so the debt can read one wei low; in a batch the debt is computed afresh as the contract does.
        """
        if timestamp <= self.now or self.shutdown_time:
            return self
        if self.batch is not None:
            grown = self.batch.debt_at(timestamp) - self.batch.debt_at(self.now)
            return replace(self, debt=self.debt + grown, now=timestamp)
        extra = self.weighted_debt * (timestamp - self.now) // ONE_YEAR // WAD
        return replace(self, debt=self.debt + extra, now=timestamp)

    def with_price(self, asset: str, price: int) -> LiquityV2Simulator:
        """A new price of the branch's collateral; BOLD is valued at 1 USD by the protocol."""
        return replace(self, price=price) if asset.lower() == self.token.lower() else self

    def with_supply(self, asset: str, amount: int) -> LiquityV2Simulator:
        """After addColl(amount); a shut-down branch refuses it (IsShutDown), the collateral then stays."""
        if asset.lower() != self.token.lower():
            raise ValueError(f"{asset} is not this branch's collateral")
        if self.shutdown_time:
            return self
        return replace(self, coll=self.coll + amount)

    def with_repay(self, asset: str, amount: int) -> LiquityV2Simulator:
        """After repaying `amount` BOLD: all of the debt closes the trove (closeTrove; its TCR >= CCR check is not
        replayed); less is repayBold, which itself caps the repayment at entireDebt - MIN_DEBT, and which a
        shut-down branch refuses (IsShutDown).
        """
        if asset.lower() != self.bold.lower():
            raise ValueError(f"{asset} is not BOLD")
        if amount >= self.debt:
            return replace(self, debt=0, batch=None)
        if self.shutdown_time:
            return self
        debt = max(self.debt - amount, min(self.debt, V2_MIN_DEBT))
        if self.batch is None:
            return replace(self, debt=debt)
        # a repayment applies the pending redistribution and compounds the batch: from then on the whole remaining
        # debt accrues at the batch's rate and fee (its shares rounded as v2 rounds them is not replayed)
        b = self.batch
        return replace(self, debt=debt, batch=None, weighted_debt=debt * (b.rate + b.fee))


@dataclass(frozen=True, slots=True)
class V2Branch:
    """One collateral branch as the registry and its TroveManager name it."""

    token: str
    trove_manager: str
    borrower_operations: str | None = None
    trove_nft: str | None = None


class LiquityV2Reader(TaggedReader):
    """Reads Liquity v2 troves (configured ids, on every branch) in one batch per check after the first."""

    _gas = CHEAP

    def __init__(
        self,
        protocol: str,
        chain: str,
        collateral_registry: str,
        accounts: Sequence[Account],
        troves: Sequence[int] = (),
        symbols: Mapping[str, str] | None = None,
        eth_usd_feeds: Mapping[int, str] | None = None,
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.registry = to_checksum_address(collateral_registry)
        self.accounts = list(accounts)
        self.troves = list(dict.fromkeys(int(t) for t in troves))
        self.skipped: list[tuple[Account, str]] = []
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        #: branch index -> its PriceFeed, where that prices the collateral at its ethUsdOracle (a WETH branch)
        self.eth_usd_feeds = {int(i): to_checksum_address(a) for i, a in (eth_usd_feeds or {}).items()}
        self.count: int | None = None
        self.branches: tuple[V2Branch, ...] = ()
        #: (branch index, trove id) -> status last seen; data is read only where the trove is live
        self.status: dict[tuple[int, int], int] = {}
        #: (branch index, trove id) -> the interest batch manager of a live trove in a batch
        self.batch_of: dict[tuple[int, int], str] = {}

    def _key(self) -> object:
        return (self.count, self.branches, tuple(sorted(self.status.items())), tuple(sorted(self.batch_of.items())))

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        if not self._replan((self._key(), tuple(sorted(self.symbols)))):
            return self._calls
        self._add(("count",), self.registry, V2_CR.totalCollaterals.encode())
        self._add(("bold",), self.registry, V2_CR.boldToken.encode())
        for i in range(self.count or 0):
            self._add(("token", i), self.registry, V2_CR.getToken.encode(i))
            self._add(("tm", i), self.registry, V2_CR.getTroveManager.encode(i))
        for i, b in enumerate(self.branches):
            tm = b.trove_manager
            for name in (
                "borrowerOperations",
                "troveNFT",
                "shutdownTime",
                "getEntireBranchColl",
                "getEntireBranchDebt",
                "getTroveIdsCount",
            ):
                self._add((name, i), tm, getattr(V2_TM, name).encode())
            self._add(("price", i), tm, V2_TM.getUnbackedPortionPriceAndRedeemability.encode(), PRICE)
            for t in self.troves:
                self._add(("status", i, t), tm, V2_TM.getTroveStatus.encode(t))
            if b.borrower_operations is None or b.trove_nft is None:
                continue
            for name in ("MCR", "CCR", "SCR", "hasBeenShutDown"):
                self._add((name, i), b.borrower_operations, getattr(V2_BO, name).encode())
            if b.token.lower() not in self.symbols:
                self._add(("symbol", i), b.token, ERC20.symbol.encode())  # once: for display only
            for acct in self.accounts:
                self._add(("balance", i, acct.address), b.trove_nft, V2_NFT.balanceOf.encode(acct.address))
            for t in self.troves:
                if self.status.get((i, t)) in V2_LIVE:
                    self._add(("trove", i, t), tm, V2_TM.getLatestTroveData.encode(t), TROVE)
                    self._add(("troves", i, t), tm, V2_TM.Troves.encode(t))
                    self._add(("owner", i, t), b.trove_nft, V2_NFT.ownerOf.encode(t))
            for manager in sorted({m for (j, _), m in self.batch_of.items() if j == i}):
                self._add(("batch", i, manager), tm, V2_TM.getLatestBatchData.encode(manager), TROVE)
        return self._calls

    def _word(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], *tag: Any) -> int:
        return self._required(got, tag, 1)[0]

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        count = self._word(got, "count")
        if not 0 < count <= 10:
            raise ValueError(f"totalCollaterals {count} is outside v2's 1..10")
        beyond = sorted(i for i in self.eth_usd_feeds if i >= count)
        if beyond:  # a mistake in the config, said on every check rather than a key that silently does nothing
            raise ReadError(
                f"{self.protocol}/{self.chain}: contracts.{ETH_USD_FEED_KEY}{beyond[0]} names branch {beyond[0]}, "
                f"but the CollateralRegistry has {count} branch{'es' if count > 1 else ''} (0..{count - 1})"
            )
        known = min(count, self.count or 0)
        pairs = [
            (address_word(self._word(got, "token", i)), address_word(self._word(got, "tm", i))) for i in range(known)
        ]
        branches = []
        for i, (token, tm) in enumerate(pairs):
            old = self.branches[i] if i < len(self.branches) and self.branches[i].trove_manager == tm else None
            if old is None:
                branches.append(V2Branch(token, tm))
                continue
            bo = address_word(self._word(got, "borrowerOperations", i))
            nft = address_word(self._word(got, "troveNFT", i))
            branches.append(V2Branch(token, tm, bo, nft))
        status = dict(self.status)
        for i, b in enumerate(self.branches[: len(branches)]):
            if b.trove_manager != branches[i].trove_manager:
                continue
            for t in self.troves:
                [s] = self._required(got, ("status", i, t), 1)
                if s >= len(V2_STATUS):
                    raise ValueError(f"trove status {s} is not one of v2's")
                status[(i, t)] = s
        batch_of = {}
        for i, _ in enumerate(branches):
            for t in self.troves:
                if ("troves", i, t) in got and status.get((i, t)) in V2_LIVE:
                    ok, data = got[("troves", i, t)]
                    # a fork laying out Troves otherwise costs a batch trove its time, not the deployment its check
                    manager = int.from_bytes(data[256:288], "big") if ok and len(data) >= 320 else 0
                    if manager:
                        batch_of[(i, t)] = address_word(manager)
                elif (i, t) in self.batch_of and status.get((i, t)) in V2_LIVE:
                    batch_of[(i, t)] = self.batch_of[(i, t)]
        learned = (count, tuple(branches), tuple(sorted(status.items())), tuple(sorted(batch_of.items())))
        if learned != self._key():
            self.count, self.branches, self.status, self.batch_of = count, tuple(branches), status, batch_of
            return None
        bold = address_word(self._word(got, "bold"))
        for i, b in enumerate(self.branches):
            if ("symbol", i) in got:
                self.symbols[b.token.lower()] = symbol_or_prefix(*got[("symbol", i)], b.token)
        return self._positions(got, block, bold)

    def _positions(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef, bold: str) -> list[Position]:
        self.skipped = []
        labels = {a.address.lower(): a for a in self.accounts}
        out: list[Position] = []
        for i, b in enumerate(self.branches):
            mcr, ccr, scr = (self._word(got, name, i) for name in ("MCR", "CCR", "SCR"))
            if not (WAD < mcr < 2 * WAD and WAD < ccr < 2 * WAD and WAD < scr < 2 * WAD):
                raise ReadError(f"{self.protocol}/{self.chain}: branch {i} ratios MCR {mcr} CCR {ccr} SCR {scr}")
            shut_flag = word_bool(self._word(got, "hasBeenShutDown", i))
            shutdown_time = self._word(got, "shutdownTime", i)
            branch_coll = self._word(got, "getEntireBranchColl", i)
            branch_debt = self._word(got, "getEntireBranchDebt", i)
            trove_count = self._word(got, "getTroveIdsCount", i)
            live = [t for t in self.troves if self.status.get((i, t)) in V2_LIVE]
            owners: dict[int, str] = {t: address_word(self._word(got, "owner", i, t)) for t in live}
            for acct in self.accounts:
                held = self._word(got, "balance", i, acct.address)
                listed = sum(1 for o in owners.values() if o.lower() == acct.address.lower())
                if held > listed:
                    self.skipped.append(
                        (
                            acct,
                            f"{self.protocol}/{self.chain}: {acct.address} holds {held} trove NFTs on branch {i} "
                            f"({self._symbol(b.token)}), the config lists {listed}: add their ids to `troves`",
                        )
                    )
            if not live:
                continue
            ok, data = got[("price", i)]
            if not ok or len(data) < 96:
                # batchLiquidateTroves reverts as well while the branch's fetchPrice does: unknown, not healthy.
                for t in live:
                    acct = labels.get(owners[t].lower()) or Account(owners[t], owners[t][:10])
                    self.skipped.append((acct, f"{self.protocol}/{self.chain}: branch {i} fetchPrice reverted"))
                continue
            unbacked, price, redeemable = int.from_bytes(data[:32], "big"), *self._price_words(data)
            if price == 0:
                raise ReadError(f"{self.protocol}/{self.chain}: branch {i} fetchPrice answered 0")
            tcr = compute_cr(branch_coll, branch_debt, price)
            branch_details = {
                "branch": i,
                "collateral_token": b.token,
                "trove_manager": b.trove_manager,
                "mcr": mcr,
                "ccr": ccr,
                "scr": scr,
                "tcr": tcr,
                "below_ccr": tcr < ccr,  # borrowing restricted (no Recovery Mode liquidations in v2)
                "below_scr": tcr < scr,  # anyone may shut the branch down
                "shut_down": shut_flag or shutdown_time != 0,
                "shutdown_time": shutdown_time,
                "redeemable": redeemable,
                "unbacked": unbacked,
                "trove_count": trove_count,
                "price": price,
                "price_source": "fetchPrice",
            }
            if i in self.eth_usd_feeds:
                branch_details["eth_usd_price_feed"] = self.eth_usd_feeds[i]
            for t in live:
                w = self._required(got, ("trove", i, t), 10)
                entire_debt, entire_coll = w[0], w[1]
                share, fee = self._batch_share(got, i, t, w[2])
                if share is not None and not shutdown_time and share.debt_at(block.timestamp) != entire_debt:
                    share = None  # the batch's data does not give the trove's debt: its time is not projected
                sim = LiquityV2Simulator(
                    token=b.token,
                    bold=bold,
                    coll=entire_coll,
                    debt=entire_debt,
                    price=price,
                    mcr=mcr,
                    live=True,
                    trove_count=trove_count,
                    weighted_debt=w[7],
                    now=block.timestamp,
                    shutdown_time=shutdown_time,
                    batch=share,
                )
                owner = owners[t]
                acct = labels.get(owner.lower()) or Account(owner, owner[:10])
                details = {
                    **branch_details,
                    "market_id": f"branch{i}:{t}",
                    "trove_id": t,
                    "status": V2_STATUS[self.status[(i, t)]],
                    "icr": sim.icr(),
                    "annual_interest_rate": w[6],
                    "accrued_interest": w[4],
                    "accrued_batch_fee": w[8],
                    "interest_batch_manager": self.batch_of.get((i, t)),
                    "annual_management_fee": fee,
                    "redist_debt_gain": w[2],
                    "redist_coll_gain": w[3],
                }
                out.append(self._position(acct, sim, block, details))
        return out

    def _batch_share(
        self, got: dict[tuple[Any, ...], tuple[bool, bytes]], i: int, t: int, redist_debt: int
    ) -> tuple[BatchShare | None, int | None]:
        """A batch trove's share of its batch (from Troves and getLatestBatchData) and the batch's fee."""
        manager = self.batch_of.get((i, t))
        if manager is None:
            return None, None
        ok, data = got[("batch", i, manager)]
        if not ok or len(data) < 12 * 32:
            return None, None  # unread: the trove's fee is then not projected, and its time says so
        shares = self._required(got, ("troves", i, t), 10)[9]
        b = words(data)[:12]
        # LatestBatchData: totalDebtShares, entireDebt.., entireColl.., accruedInterest, recordedDebt,
        # annualInterestRate, weightedRecordedDebt, annualManagementFee, accruedManagementFee, .., lastDebtUpdateTime
        share = BatchShare(b[4], b[5], b[7], b[10], b[0], shares, redist_debt)
        return share, b[7]

    @staticmethod
    def _price_words(data: bytes) -> tuple[int, bool]:
        price = int.from_bytes(data[32:64], "big")
        return price, word_bool(int.from_bytes(data[64:96], "big"))

    def _symbol(self, token: str) -> str:
        return self.symbols.get(token.lower(), token[:8])

    def _position(self, acct: Account, sim: LiquityV2Simulator, block: BlockRef, details: dict[str, Any]) -> Position:
        coll = Leg(
            sim.token,
            self._symbol(sim.token),
            18,  # v2 accepts 18-decimal collaterals only (WETH and LSTs)
            sim.coll,
            sim.price,
            sim.coll * sim.price // WAD,
            BPS * WAD // sim.mcr,
        )
        debt = Leg(sim.bold, "BOLD", 18, sim.debt, WAD, sim.debt)
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=acct.address,
            label=acct.label,
            collateral=(coll,),
            debt=(debt,),
            health=sim.health(),
            liquidatable=sim.liquidatable(),
            base_unit=WAD,
            base_currency="USD",
            block=block,
            details=details,
            simulator=sim,
        )


#: a deployment's contracts key naming branch <i>'s PriceFeed where it answers its ethUsdOracle (WETHPriceFeed)
ETH_USD_FEED_KEY = "eth_usd_price_feed_"


def make_reader_v2(dep: Any, accounts: Sequence[Account]) -> LiquityV2Reader:
    """A v2 reader for a resolved deployment (its address is the CollateralRegistry; trove ids from `troves`)."""
    feeds: dict[int, str] = {}
    for key, address in dep.extra.items():
        if key.startswith(ETH_USD_FEED_KEY):
            branch = key.removeprefix(ETH_USD_FEED_KEY)
            if not re.fullmatch(r"0|[1-9][0-9]?", branch):
                raise ConfigError(
                    f"deployment {dep.name} on {dep.chain}: contracts.{key}: ends in {branch!r}, not a branch index "
                    f"(0, 1, ... as the CollateralRegistry numbers its branches: e.g. {ETH_USD_FEED_KEY}0)"
                )
            feeds[int(branch)] = address
    return LiquityV2Reader(dep.name, dep.chain, dep.address, accounts, dep.troves, eth_usd_feeds=feeds)


class LiquityV2Options(ProtocolOptions):
    """Liquity v2's own [[deployments]] keys."""

    #: trove ids to watch besides those the accounts own (an owner's troves cannot be listed cheaply)
    troves: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)


register(ChainProtocol("liquity_v2", "collateral_registry", make_reader_v2, options=LiquityV2Options))
