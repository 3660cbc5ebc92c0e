"""Morpho Blue adapter: raw market and position state in one batch, the contract's `_isHealthy` replayed exactly.

A check reads, at one pinned block and per market: idToMarketParams, market(id) (stored, not accrued), the
oracle's price() and the IRM's borrowRateView(params, market); per account and market: position(id, user).
Interest is then accrued in Python as `_accrueInterest` does, and health follows Morpho's own integer rounding
(src/Morpho.sol `_isHealthy`, libraries/SharesMathLib.sol and MathLib.sol of morpho-blue 1.0.0).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_utils import keccak, to_checksum_address
from pydantic import Field

from watcher.abi import Contract, symbol_or_prefix, word
from watcher.adapters.base import Account, Call, LogQuery, ReadError, TaggedReader
from watcher.config import ConfigError, MarketId, ProtocolOptions, Where
from watcher.model import BPS, WAD, BlockRef, Leg, Position
from watcher.registry import ChainProtocol, Entry, register

MORPHO = Contract("IMorpho")
ORACLE = Contract("IMorphoOracle")
IRM = Contract("IIrm")
ERC20 = Contract("IERC20Metadata")

#: Events whose `onBehalf` topic finds an account's markets: SupplyCollateral has it as topic 3, Borrow as topic 2.
SUPPLY_COLLATERAL_TOPIC = "0x" + keccak(text="SupplyCollateral(bytes32,address,address,uint256)").hex()
BORROW_TOPIC = "0x" + keccak(text="Borrow(bytes32,address,address,address,uint256,uint256)").hex()
#: blocks each rescan repeats, for events a reorg moved
REORG_BLOCKS = 64
#: seconds between scans for markets an account newly entered
RESCAN_SECONDS = 300.0
ORACLE_PRICE_SCALE = 10**36
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1
_CHEAP, _IRM = 10_000, 30_000


# --- Morpho's MathLib and SharesMathLib, integer for integer


def mul_div_down(x: int, y: int, d: int) -> int:
    """MathLib.mulDivDown: floor(x*y/d)."""
    return x * y // d


def mul_div_up(x: int, y: int, d: int) -> int:
    """MathLib.mulDivUp: (x*y + d-1) / d."""
    return (x * y + d - 1) // d


def w_taylor_compounded(x: int, n: int) -> int:
    """MathLib.wTaylorCompounded: e^(x*n) - 1 to the third term, each term floored as the contract does."""
    first = x * n
    second = mul_div_down(first, first, 2 * WAD)
    third = mul_div_down(second, first, 3 * WAD)
    return first + second + third


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    """SharesMathLib.toAssetsUp, with the virtual shares (1e6) and assets (1)."""
    return mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    """SharesMathLib.toSharesDown, with the virtual shares and assets (a repayment burns these many shares)."""
    return mul_div_down(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


@dataclass(frozen=True, slots=True)
class MorphoMarketState:
    """One market as stored (not accrued), its params, the oracle price and the IRM's rate at the read block."""

    id: str
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int
    total_borrow_assets: int
    total_borrow_shares: int
    last_update: int
    borrow_rate: int  #: per second, WAD, as borrowRateView answered for the stored market
    price: int  #: oracle price, loan units per collateral unit scaled by 1e36

    def total_borrow_at(self, now: int) -> int:
        """totalBorrowAssets after `_accrueInterest` at `now` (fees only mint supply shares; borrowers don't see them).

        The rate is the one the IRM gives for the stored market; with IrmMock (or any IRM whose rate depends on
        the stored market only) this is exact for any `now`, with the AdaptiveCurveIrm it is exact at the read block.
        """
        elapsed = now - self.last_update
        if elapsed <= 0 or self.irm == "0x" + "0" * 40 or int(self.irm, 16) == 0:
            return self.total_borrow_assets
        interest = mul_div_down(self.total_borrow_assets, w_taylor_compounded(self.borrow_rate, elapsed), WAD)
        return self.total_borrow_assets + interest


@dataclass(frozen=True, slots=True)
class MorphoSimulator:
    """Exact replay of Morpho Blue's `_isHealthy` for one position, with price, time or balances changed."""

    market: MorphoMarketState
    borrow_shares: int
    collateral: int
    now: int
    price: int

    def borrowed(self) -> int:
        """The debt in loan units: toAssetsUp(borrowShares) on the accrued market."""
        return to_assets_up(self.borrow_shares, self.market.total_borrow_at(self.now), self.market.total_borrow_shares)

    def max_borrow(self) -> int:
        """mulDivDown(mulDivDown(collateral, price, 1e36), lltv, 1e18), as `_isHealthy` computes it."""
        return mul_div_down(mul_div_down(self.collateral, self.price, ORACLE_PRICE_SCALE), self.market.lltv, WAD)

    def healthy(self) -> bool:
        """Morpho's verdict: maxBorrow >= borrowed."""
        return self.max_borrow() >= self.borrowed()

    def health(self) -> int | None:
        """floor(maxBorrow * 1e18 / borrowed); None without debt.

        Rounding down keeps the verdict exact: health >= 1e18 iff maxBorrow >= borrowed iff Morpho says healthy,
        so `liquidatable` (computed from `healthy()`) is exactly `health < WAD`.
        """
        borrowed = self.borrowed()
        if borrowed == 0:
            return None
        return self.max_borrow() * WAD // borrowed

    def at_time(self, timestamp: int) -> MorphoSimulator:
        """The same position with interest accrued to `timestamp`."""
        return replace(self, now=timestamp)

    def with_price(self, asset: str, price: int) -> MorphoSimulator:
        """Replace the oracle price (of the collateral token; the loan token has no price of its own)."""
        if asset.lower() == self.market.collateral_token.lower():
            return replace(self, price=price)
        return self

    def with_supply(self, asset: str, amount: int) -> MorphoSimulator:
        """After supplyCollateral(amount) (no interest accrues on that path in Morpho)."""
        if asset.lower() != self.market.collateral_token.lower():
            raise ValueError(f"{asset} is not this market's collateral")
        return replace(self, collateral=self.collateral + amount)

    def with_repay(self, asset: str, amount: int) -> MorphoSimulator:
        """After repay(assets=amount): shares burnt = toSharesDown on the accrued market, as Morpho.repay does."""
        if asset.lower() != self.market.loan_token.lower():
            raise ValueError(f"{asset} is not this market's loan token")
        total_assets = self.market.total_borrow_at(self.now)
        total_shares = self.market.total_borrow_shares
        burnt = min(to_shares_down(amount, total_assets, total_shares), self.borrow_shares)
        # The market totals move with the repayment; share price is kept, so fold them into a derived market.
        market = replace(
            self.market,
            total_borrow_assets=max(total_assets - amount, 0),
            total_borrow_shares=total_shares - burnt,
            last_update=self.now,
        )
        return replace(self, market=market, borrow_shares=self.borrow_shares - burnt)


def _is_word(x: Any) -> bool:
    """A 0x-prefixed 32-byte hex word, as a log topic is."""
    return isinstance(x, str) and len(x) == 66 and x[:2] in ("0x", "0X") and all(c in _HEX for c in x[2:])


_HEX = frozenset("0123456789abcdefABCDEF")


class MorphoBlueReader(TaggedReader):
    """Reads Morpho Blue markets (by id) for a set of accounts, in one batch per check."""

    _gas = _CHEAP

    def __init__(
        self,
        protocol: str,
        chain: str,
        morpho_address: str,
        market_ids: Sequence[str],
        accounts: Sequence[Account],
        discover_from: int | None = None,
        rescan_seconds: float = RESCAN_SECONDS,
    ) -> None:
        self.protocol = protocol
        #: discovery: scan the Morpho's logs from this block for markets the accounts supplied collateral to or
        #: borrowed from (None: only the given markets)
        self.discover_from = discover_from
        self.rescan_seconds = rescan_seconds
        self.scanned_to: int | None = None
        self._scanned_at = 0.0
        self.chain = chain
        self.morpho = to_checksum_address(morpho_address)
        self.market_ids = [("0x" + m.lower().removeprefix("0x")).rjust(66, "0") for m in market_ids]
        self.configured = set(self.market_ids)  #: always reported; discovered ones only where the account is in
        self.accounts = list(accounts)
        #: accounts the last parse could not value (a reverting oracle or IRM), with the reason
        self.skipped: list[tuple[Account, str]] = []
        # Market params are immutable in Morpho once created, so each market's oracle and IRM are learned once.
        self.params: dict[str, tuple[str, str, str, str, int]] = {}
        # Token (decimals, symbol); the mocks have neither, so a failed read is remembered as a fallback.
        self.tokens: dict[str, tuple[int, str]] = {}
        # borrowRateView takes the market struct, which is read in the same batch: the call carries the struct
        # the last round saw, and a round that finds the market changed asks again at the same block.
        self.markets: dict[str, tuple[int, ...]] = {}

    def log_queries(self, head: int) -> list[LogQuery]:
        """The event scans that find markets the accounts entered since the last scan (at most every rescan_seconds)."""
        if self.discover_from is None or not self.accounts:
            return []
        now = time.monotonic()
        if self.scanned_to is not None and (now - self._scanned_at < self.rescan_seconds or head <= self.scanned_to):
            return []
        # each rescan overlaps the last by REORG_BLOCKS: an event a reorg moved into scanned blocks is still found
        start = (
            self.discover_from
            if self.scanned_to is None
            else max(self.discover_from, self.scanned_to + 1 - REORG_BLOCKS)
        )
        who = tuple("0x" + a.address[2:].lower().rjust(64, "0") for a in self.accounts)
        return [
            LogQuery(self.morpho, (SUPPLY_COLLATERAL_TOPIC, None, None, who), start, head),
            LogQuery(self.morpho, (BORROW_TOPIC, None, who), start, head),
        ]

    def take_logs(self, head: int, logs: Sequence[list[dict[str, Any]]]) -> None:
        """Add the markets named by the scans' events; a malformed event is a ReadError and nothing is learned."""
        found: list[str] = []
        for log in (entry for answer in logs for entry in answer):
            topics = log.get("topics") if isinstance(log, dict) else None
            # the id must be a whole bytes32: a malformed one kept in market_ids would break every later check
            if not isinstance(topics, list) or len(topics) < 3 or not _is_word(topics[1]):
                raise ReadError(f"{self.protocol}/{self.chain}: eth_getLogs answered a malformed Morpho event")
            found.append(topics[1].lower())
        for mid in found:
            if mid not in self.market_ids:
                self.market_ids.append(mid)
        self.scanned_to, self._scanned_at = head, time.monotonic()

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        key = (tuple(sorted(self.params.items())), tuple(sorted(self.tokens)), tuple(sorted(self.markets.items())))
        if not self._replan(key):
            return self._calls
        for mid in self.market_ids:
            idn = int(mid, 16)
            self._add(("params", mid), self.morpho, MORPHO.idToMarketParams.encode(idn))
            self._add(("market", mid), self.morpho, MORPHO.market.encode(idn))
            params, market = self.params.get(mid), self.markets.get(mid)
            if params is None or market is None:
                continue  # the oracle, the IRM and the market struct are known only after the first round
            loan, coll, oracle, irm, _ = params
            self._add(("price", mid), oracle, ORACLE.price.encode(), _IRM)
            self._add(("rate", mid, market), irm, IRM.borrowRateView.encode(params, market), _IRM)
            for tok in (loan, coll):
                if tok not in self.tokens:
                    self._add(("dec", tok), tok, ERC20.decimals.encode())
                    self._add(("sym", tok), tok, ERC20.symbol.encode())
            for acct in self.accounts:
                self._add(("pos", mid, acct.address), self.morpho, MORPHO.position.encode(idn, acct.address))
        return self._calls

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        fresh = True
        for mid in self.market_ids:
            w = self._required(got, ("params", mid), 5)
            if any(x >> 160 for x in w[:4]):
                raise ValueError(f"idToMarketParams({mid}) holds a non-address")
            params = (*(to_checksum_address(x.to_bytes(20, "big")) for x in w[:4]), w[4])
            if self.params.get(mid) != params:
                self.params[mid] = params  # type: ignore[assignment]
                fresh = False
            market = tuple(self._required(got, ("market", mid), 6))
            if self.markets.get(mid) != market:
                self.markets[mid] = market
                fresh = False
        if not fresh:
            return None
        for tag, (ok, data) in got.items():
            if tag[0] == "dec":
                dec = word(data) if ok and len(data) >= 32 and word(data) <= 77 else 18
                self.tokens[tag[1]] = (dec, symbol_or_prefix(*got[("sym", tag[1])], tag[1]))
        out: list[Position] = []
        self.skipped = []
        for mid in self.market_ids:
            loan, coll, oracle, irm, lltv = self.params[mid]
            m = self.markets[mid]
            if m[4] == 0:
                raise ReadError(f"{self.protocol}/{self.chain}: market {mid} is not created")
            price_ok, price_data = got[("price", mid)]
            rate_ok, rate_data = got[("rate", mid, m)]
            broken = None
            if not price_ok or len(price_data) < 32:
                broken = "the oracle price reverted"
            elif not rate_ok or len(rate_data) < 32:
                # liquidate() itself would revert while the IRM does, but the debt cannot be valued either.
                broken = "the IRM's borrowRateView reverted"
            if broken:
                for acct in self.accounts:
                    self.skipped.append((acct, f"{self.protocol}/{self.chain}: market {mid[:10]}: {broken}"))
                continue
            state = MorphoMarketState(
                mid, loan, coll, oracle, irm, lltv, m[2], m[3], m[4], word(rate_data), word(price_data)
            )
            for acct in self.accounts:
                pos = self._required(got, ("pos", mid, acct.address), 3)
                if mid not in self.configured and pos[1] == 0 and pos[2] == 0:
                    continue  # a discovered market this account is not (or no longer) in
                sim = MorphoSimulator(state, pos[1], pos[2], block.timestamp, state.price)
                out.append(self._position(acct, sim, block))
        return out

    def _position(self, acct: Account, sim: MorphoSimulator, block: BlockRef) -> Position:
        st = sim.market
        loan_dec, loan_sym = self.tokens.get(st.loan_token, (18, st.loan_token[:8]))
        coll_dec, coll_sym = self.tokens.get(st.collateral_token, (18, st.collateral_token[:8]))
        borrowed, max_borrow = sim.borrowed(), sim.max_borrow()
        # Values are in loan-token units. The collateral leg's price is the oracle's own number, so that
        # risk.liquidation_price answers in the oracle's units; the loan token is the unit, 10**decimals a token.
        collateral = Leg(
            st.collateral_token,
            coll_sym,
            coll_dec,
            sim.collateral,
            sim.price,
            mul_div_down(sim.collateral, sim.price, ORACLE_PRICE_SCALE),
            st.lltv * BPS // WAD,  # display only; the simulator keeps the exact LLTV
        )
        debt = Leg(st.loan_token, loan_sym, loan_dec, borrowed, 10**loan_dec, borrowed)
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=acct.address,
            label=acct.label,
            collateral=(collateral,),
            debt=(debt,),
            health=sim.health(),
            # Exactly Morpho's `!_isHealthy`: maxBorrow < borrowed (also `health < WAD`, see MorphoSimulator.health).
            liquidatable=max_borrow < borrowed,
            base_unit=10**loan_dec,
            base_currency=loan_sym,
            block=block,
            details={
                "morpho": self.morpho,
                "market_id": st.id,
                "lltv": st.lltv,
                "oracle_price": sim.price,
                "morpho_oracle": st.oracle,  # whose feeds the liquidation probability walks
                "borrow_shares": sim.borrow_shares,
                "max_borrow": max_borrow,
            },
            simulator=sim,
        )


def make_reader(dep: Any, accounts: Sequence[Account]) -> MorphoBlueReader:
    """The reader of a resolved Morpho Blue deployment: its markets, and the block to discover others from."""
    start = dep.discover_from_block if dep.discover else None
    return MorphoBlueReader(dep.name, dep.chain, dep.address, dep.markets, list(accounts), start)


class MorphoOptions(ProtocolOptions):
    """Morpho Blue's own [[deployments]] keys."""

    markets: list[MarketId] = Field(default_factory=list)  #: ids of the markets to watch
    #: also find the markets the accounts supplied collateral to or borrowed from, scanning the Morpho's logs from
    #: its deployment block (or from `discover_from_block`)
    discover: bool = False
    discover_from_block: int | None = Field(default=None, ge=0)


def settle(
    options: MorphoOptions, entries: list[Entry], where: Where
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Markets to read, and where discovery scans from: the configured block, else the deployment's own."""
    if not options.markets and not options.discover:
        raise ConfigError(
            f"{where.key}.markets: give the ids of the Morpho Blue markets to watch, or set discover = true"
        )
    out = []
    for name, entry in entries:
        start = None
        if options.discover:
            start = options.discover_from_block if options.discover_from_block is not None else entry.get("deployed_at")
            if not isinstance(start, int):
                raise ConfigError(
                    f"{where.key}.discover_from_block: give the block to scan the Morpho's logs from (its "
                    "deployment block; protocols/ knows it only for the deployments it lists)"
                )
        out.append((name, entry, options.model_dump() | {"discover_from_block": start}))
    return out


register(ChainProtocol("morpho_blue", "morpho", make_reader, options=MorphoOptions, settle=settle))
