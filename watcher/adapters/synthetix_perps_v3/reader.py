"""Synthetix perps v3 reader: the PerpsMarketProxy views and storage slots, planned, parsed and checked."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from watcher.abi import Contract
from watcher.adapters.base import Account, Call, ReadError, TaggedReader
from watcher.adapters.synthetix_perps_v3.math import D18, MarketState, PositionState, _signed
from watcher.adapters.synthetix_perps_v3.simulator import SynthetixAccountSimulator
from watcher.model import BlockRef, Leg, PerpLeg, Position

PROXY = Contract("ISynthetixPerpsMarketProxy")
NODE = Contract("ISynthetixPerpsOracleNode")
USD = "snxUSD"  #: the collateral leg's asset: available margin in USD (D18)
_CHEAP, _HEAVY = 20_000, 400_000

FACTORY_SLOT = int.from_bytes(keccak(abi_encode(["string"], ["io.synthetix.perps-market.PerpsMarketFactory"])), "big")
INTEREST_SLOT = int.from_bytes(keccak(abi_encode(["string"], ["io.synthetix.perps-market.InterestRate"])), "big")
_POSITIONS = 11  #: PerpsMarket.Data: name, symbol, id, skew, size, lastFundingRate(5), lastFundingValue(6),
#: lastFundingTime(7), two packed uint128 (8), debtCorrectionAccumulator (9), asyncOrders (10), positions (11)
_KEYS = [b"numberOfUpdatedFeeds".ljust(32, b"\0"), b"executionKind".ljust(32, b"\0"), b"\0" * 32, b"\0" * 32]
_FLAG, _LIQUIDATE = 1, 2


def market_slot(market_id: int) -> int:
    """PerpsMarket.load(marketId): keccak256(abi.encode("io.synthetix.perps-market.PerpsMarket", marketId))."""
    return int.from_bytes(
        keccak(abi_encode(["string", "uint128"], ["io.synthetix.perps-market.PerpsMarket", market_id])), "big"
    )


def position_slot(market_id: int, account_id: int) -> int:
    """The first slot of PerpsMarket.load(marketId).positions[accountId] (Position.Data)."""
    return int.from_bytes(
        keccak(abi_encode(["uint256", "uint256"], [account_id, market_slot(market_id) + _POSITIONS])), "big"
    )


class SynthetixPerpsV3Reader(TaggedReader):
    """Reads Synthetix perps v3 accounts (by NFT id) from one PerpsMarketProxy, in one batch per check."""

    _gas = _CHEAP

    def __init__(
        self, protocol: str, chain: str, proxy_address: str, accounts: Sequence[Account], account_ids: Sequence[int]
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.proxy = to_checksum_address(proxy_address)
        self.accounts = list(accounts)
        self.account_ids = [int(i) for i in account_ids]
        #: accounts that could not be valued (an id nobody owns), with the reason
        self.skipped: list[tuple[Account, str]] = []
        # Learned at the first check and re-read every check: each account's open markets and collateral types,
        # the oracle manager and the keeper-cost node; a change asks once more at the same block.
        self.learned: tuple[Any, ...] | None = None
        self._symbols: dict[int, str] = {}

    def _slot(self, tag: tuple[Any, ...], slot: int) -> None:
        self._add(tag, self.proxy, b"", 0, slot)

    def _markets(self) -> list[int]:
        assert self.learned is not None
        opens, _, _, _ = self.learned
        return sorted({m for ms in opens for m in ms})

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        if not self._replan(self.learned):
            return self._calls
        for i in self.account_ids:
            self._add(("open", i), self.proxy, PROXY.getAccountOpenPositions.encode(i))
            self._add(("colls", i), self.proxy, PROXY.getAccountCollateralIds.encode(i))
        self._slot(("oracle",), FACTORY_SLOT)
        self._add(("node",), self.proxy, PROXY.getKeeperCostNodeId.encode())
        if self.learned is None:
            return self._calls
        opens, colls, oracle, node = self.learned
        self._add(("guards",), self.proxy, PROXY.getKeeperRewardGuards.encode())
        self._add(("cratio",), self.proxy, PROXY.getCollateralLiquidateRewardRatio.encode())
        self._add(("flagged",), self.proxy, PROXY.flaggedAccounts.encode(), _HEAVY)
        for k in range(3):
            self._slot(("ir", k), INTEREST_SLOT + k)
        cost = NODE.processWithRuntime.encode(
            node, _KEYS, [(0).to_bytes(32, "big"), _LIQUIDATE.to_bytes(32, "big"), *_KEYS[2:]]
        )
        self._add(("lcost",), oracle, cost, _HEAVY)
        for m in self._markets():
            for name in ("indexPrice", "getLiquidationParameters", "getFundingParameters", "getLockedOiRatio"):
                self._add(
                    (name, m), self.proxy, getattr(PROXY, name).encode(m), _HEAVY if name == "indexPrice" else _CHEAP
                )
            for name in ("getOrderFees", "getMaxLiquidationParameters", "currentFundingRate", "skew"):
                self._add((name, m), self.proxy, getattr(PROXY, name).encode(m))
            if m not in self._symbols:
                self._add(("metadata", m), self.proxy, PROXY.metadata.encode(m))
            for k in (5, 6, 7):  # lastFundingRate, lastFundingValue, lastFundingTime
                self._slot(("mkt", m, k), market_slot(m) + k)
        for i, ms, cs in zip(self.account_ids, opens, colls, strict=True):
            self._add(("owner", i), self.proxy, PROXY.getAccountOwner.encode(i))
            for name in ("getAvailableMargin", "getRequiredMargins"):
                self._add((name, i), self.proxy, getattr(PROXY, name).encode(i), _HEAVY * (1 + len(ms)))
            self._add(("tcv", i), self.proxy, PROXY.totalCollateralValue.encode(i), _HEAVY)
            self._add(("debt", i), self.proxy, PROXY.debt.encode(i))
            # KeeperCosts.getFlagKeeperCosts: one updated feed per non-snxUSD collateral and per open position.
            feeds = len([c for c in cs if c != 0]) + len(ms)
            values = [feeds.to_bytes(32, "big"), _FLAG.to_bytes(32, "big"), *_KEYS[2:]]
            self._add(("fcost", i), oracle, NODE.processWithRuntime.encode(node, _KEYS, values), _HEAVY)
            for m in ms:
                self._add(("pos", i, m), self.proxy, PROXY.getOpenPosition.encode(i, m), _HEAVY)
                base = position_slot(m, i)
                self._slot(("pslot", i, m, 1), base + 1)
                self._slot(("pslot", i, m, 2), base + 2)
        return self._calls

    def _array(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], tag: tuple[Any, ...], fn: Any) -> tuple[int, ...]:
        ok, data = got[tag]
        if not ok:
            raise ReadError(f"{self.protocol}/{self.chain}: call {tag[0]} {tag[1:]} reverted")
        [values] = fn.decode(data)
        return tuple(int(v) for v in values)

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        opens = tuple(self._array(got, ("open", i), PROXY.getAccountOpenPositions) for i in self.account_ids)
        colls = tuple(self._array(got, ("colls", i), PROXY.getAccountCollateralIds) for i in self.account_ids)
        [oracle_word] = self._required(got, ("oracle",), 1)
        if oracle_word == 0 or oracle_word >> 160:
            raise ReadError(f"{self.protocol}/{self.chain}: the proxy's oracle manager slot holds {oracle_word:#x}")
        oracle = to_checksum_address(oracle_word.to_bytes(20, "big"))
        node = self._required(got, ("node",), 1)[0].to_bytes(32, "big")
        learned = (opens, colls, oracle, node)
        if learned != self.learned:
            self.learned = learned
            return None
        for m in self._markets():
            if ("metadata", m) in got:
                ok, data = got[("metadata", m)]
                self._symbols[m] = str(PROXY.metadata.decode(data)[1]) if ok else str(m)
        guards = tuple(self._required(got, ("guards",), 4))
        [cratio] = self._required(got, ("cratio",), 1)
        flagged = set(self._array(got, ("flagged",), PROXY.flaggedAccounts))
        interest = tuple(self._required(got, ("ir", k), 1)[0] for k in range(3))
        interest = (interest[0], interest[1] & ((1 << 128) - 1), interest[2])
        [liquidate_cost] = self._required(got, ("lcost",), 1)
        markets, prices = [], []
        for m in self._markets():
            [price] = self._required(got, ("indexPrice", m), 1)
            liq = self._required(got, ("getLiquidationParameters", m), 5)
            skew_scale, max_velocity = self._required(got, ("getFundingParameters", m), 2)
            [locked] = self._required(got, ("getLockedOiRatio", m), 1)
            maker, taker = self._required(got, ("getOrderFees", m), 2)
            mult, secs = self._required(got, ("getMaxLiquidationParameters", m), 2)
            [rate] = self._required(got, ("currentFundingRate", m), 1)
            [skew] = self._required(got, ("skew", m), 1)
            f = [self._required(got, ("mkt", m, k), 1)[0] for k in (5, 6, 7)]
            markets.append(
                MarketState(
                    m, self._symbols.get(m, str(m)), skew_scale, liq[0], liq[1], liq[2], liq[3], liq[4], locked,
                    maker, taker, mult, secs, _signed(f[0]), _signed(f[1]), f[2], _signed(skew), max_velocity,
                )
            )  # fmt: skip
            if markets[-1].funding_rate(block.timestamp) != _signed(rate):
                raise ReadError(
                    f"{self.protocol}/{self.chain}: replayed funding rate of market {m} != currentFundingRate"
                )
            prices.append(price)
        by_address = {a.address.lower(): a for a in self.accounts}
        self.skipped = []
        out = []
        for i, ms, _cs in zip(self.account_ids, opens, colls, strict=True):
            [owner_word] = self._required(got, ("owner", i), 1)
            if owner_word == 0:
                self.skipped.append(
                    (Account("0x" + "0" * 40, f"acct{i}"), f"{self.protocol}: account {i} has no owner")
                )
                continue
            owner = to_checksum_address(owner_word.to_bytes(20, "big"))
            account = by_address.get(owner.lower(), Account(owner, f"acct{i}"))
            out.append(self._account(got, block, i, ms, account, markets, prices, guards, cratio, liquidate_cost,
                                     interest, i in flagged))  # fmt: skip
        return out

    def _account(
        self,
        got: dict[tuple[Any, ...], tuple[bool, bytes]],
        block: BlockRef,
        i: int,
        ms: tuple[int, ...],
        account: Account,
        markets: list[MarketState],
        prices: list[int],
        guards: tuple[int, ...],
        cratio: int,
        liquidate_cost: int,
        interest: tuple[int, ...],
        flagged: bool,
    ) -> Position:
        [available] = (_signed(w) for w in self._required(got, ("getAvailableMargin", i), 1))
        req_initial, req_maint, reward = self._required(got, ("getRequiredMargins", i), 3)
        [total_collateral] = self._required(got, ("tcv", i), 1)
        [debt] = self._required(got, ("debt", i), 1)
        [flag_cost] = self._required(got, ("fcost", i), 1)
        positions, views = [], []
        for m in ms:
            w = self._required(got, ("pos", i, m), 4)
            total_pnl, accrued, size, owed = _signed(w[0]), _signed(w[1]), _signed(w[2]), w[3]
            [w1] = self._required(got, ("pslot", i, m, 1), 1)
            [w2] = self._required(got, ("pslot", i, m, 2), 1)
            positions.append(PositionState(m, size, w1 & ((1 << 128) - 1), _signed(w1 >> 128, 128), w2))
            views.append((total_pnl, accrued, owed))
        used = tuple(k for k, mk in enumerate(markets) if mk.market_id in ms)
        sim = SynthetixAccountSimulator(
            account_id=i,
            now=block.timestamp,
            markets=tuple(markets[k] for k in used),
            prices=tuple(prices[k] for k in used),
            positions=tuple(positions),
            interest=(interest[0], interest[1], interest[2]),
            # availableMargin = discounted collateral + sum(totalPnl) - debt, so the discounted value is exact
            collateral_discounted=available - sum(v[0] for v in views) + debt,
            collateral_value=total_collateral,
            debt=debt,
            guards=(guards[0], guards[1], guards[2], guards[3]),
            collateral_reward_ratio=cratio,
            flag_cost=flag_cost,
            liquidate_cost=liquidate_cost,
            flagged=flagged,
        )
        where = f"{self.protocol}/{self.chain}: account {i}"
        for pos, view in zip(positions, views, strict=True):
            if sim.pnl(pos) != view:
                raise ReadError(f"{where}: replayed PnL {sim.pnl(pos)} != getOpenPosition {view} (layout change?)")
        if ms and (sim.reward(), sim.requirement()) != (reward, req_maint):
            raise ReadError(
                f"{where}: replayed requirement {sim.requirement()} (reward {sim.reward()}) != getRequiredMargins "
                f"{req_maint} (reward {reward})"
            )
        return self._position(account, block, sim, req_initial)

    def _position(
        self, account: Account, block: BlockRef, sim: SynthetixAccountSimulator, req_initial: int
    ) -> Position:
        maint = sim.maintenances()
        reward = sim.reward() if sim.positions else 0
        total_notional = sum(n for _, _, n in maint)
        legs = []
        shared = 0
        for k, (pos, (mm, mmr, notional)) in enumerate(zip(sim.positions, maint, strict=True)):
            market, price = sim._market(pos.market_id)
            # The reward is the account's, not a position's: shared by notional, the rest on the last leg, so the
            # legs' requirements add up to exactly what canLiquidate compares.
            last = k == len(sim.positions) - 1
            share = reward - shared if last else (reward * notional // total_notional if total_notional else 0)
            shared += share
            total_pnl, accrued, interest = sim.pnl(pos)
            liq = sim.liquidation_price(pos.market_id)
            legs.append(
                PerpLeg(
                    market=market.symbol,
                    size=pos.size,
                    size_decimals=18,
                    # PerpLeg prices are whole USD per coin; Synthetix's are D18
                    entry_price=Fraction(pos.last_price, D18),  # the last interaction price: PnL is settled there
                    mark_price=Fraction(price, D18),
                    notional=notional,
                    requirement=mm + share,
                    rate=Fraction(mmr, D18),
                    margin_mode="cross",
                    liquidation_price=None if liq is None else Fraction(liq, D18),
                    details={
                        "market_id": pos.market_id,
                        "maintenance_margin": mm,
                        "liquidation_reward_share": share,
                        "total_pnl": total_pnl,
                        "accrued_funding": accrued,
                        "owed_interest": interest,
                    },
                )
            )
        available = sim.available()
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=account.address,
            label=account.label,
            collateral=(Leg(USD, USD, 18, sim.collateral_discounted, D18, sim.collateral_discounted, 10_000),),
            debt=(),
            health=sim.health(),
            liquidatable=sim.liquidatable(),
            base_unit=D18,
            base_currency="USD",
            block=block,
            details={
                "market_id": f"acct{sim.account_id}",
                "account_id": sim.account_id,
                "available_margin": available,
                "required_maintenance_margin": sim.requirement(),
                "required_initial_margin": req_initial,
                "liquidation_reward": reward,
                "debt": sim.debt,
                "collateral_value": sim.collateral_value,
                "flagged": sim.flagged,
            },
            simulator=sim,
            perps=tuple(legs),
            cross_equity=available if legs else None,
        )


def make_reader(dep: Any, accounts: Sequence[Account]) -> SynthetixPerpsV3Reader:
    """A reader for a resolved Deployment (address = the PerpsMarketProxy, account_ids = the NFT ids to watch)."""
    return SynthetixPerpsV3Reader(dep.name, dep.chain, dep.address, accounts, dep.account_ids)
