"""Aave v3 adapter (and forks such as Spark): raw per-user state in one batch, health replayed exactly.

A check reads, at one pinned block: the Pool revision, the reserve list and each reserve's data (indexes,
rates, configuration), the oracle prices, the eMode categories in use, and for each account its user
configuration, its eMode and the scaled balances of the reserves it uses. Health is then computed in Python
with the revision's own rounding (aave_math), which costs far less gas than getUserAccountData per account
and yields the per-asset breakdown that liquidation prices need.

Which reserves an account uses is only known after reading its configuration; the reader assumes what the
previous check saw and, if an account changed, asks for another round at the same block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import Contract, symbol_or_prefix, word, word_address, words
from watcher.adapters.aave_math import (
    REV_EMODE_BITMAP,
    VERIFIED_REVISIONS,
    AaveSimulator,
    EModeCategory,
    Market,
    Reserve,
)
from watcher.adapters.base import Account, Call, ReadError, TaggedReader
from watcher.model import MAX_UINT256, WAD, BlockRef, Leg, Position
from watcher.registry import ChainProtocol, register

POOL = Contract("IPool")
PROVIDER = Contract("IPoolAddressesProvider")
ORACLE = Contract("IAaveOracle")
SCALED = Contract("IScaledBalanceToken")
ERC20 = Contract("IERC20Metadata")

# Gas estimates per call, measured on Aave v3.0 and v3.6 with some headroom; they size batches, and a batch
# the node still refuses is split (chain.ChainClient.read).
_CHEAP, _BALANCE, _RESERVE = 8_000, 8_000, 30_000


def _bits(data: int, shift: int, width: int) -> int:
    return (data >> shift) & ((1 << width) - 1)


#: tags whose answer is one word of one account's own state
_USER_WORDS = frozenset(("ucfg", "uem", "sa", "sv", "ss"))


@dataclass(slots=True)
class _UserAnswers:
    """One account's answers in a round; None until read (the round was planned before the Pool was known)."""

    config: int | None = None  #: getUserConfiguration: two bits (borrowing, collateral) per reserve id
    emode: int | None = None  #: getUserEMode: the eMode category, 0 for none
    scaled_a: dict[int, int] = field(default_factory=dict)  #: reserve id -> scaled aToken balance
    scaled_v: dict[int, int] = field(default_factory=dict)  #: reserve id -> scaled variable debt
    stable: dict[int, int] = field(default_factory=dict)  #: reserve id -> stable debt balance
    pool_view: bytes | None = None  #: getUserAccountData, asked only of revisions the tests have not verified

    def take(self, kind: str, rest: tuple[Any, ...], value: int) -> None:
        """Store the word answered to the call tagged (kind, user, *rest)."""
        if kind == "ucfg":
            self.config = value
        elif kind == "uem":
            self.emode = value
        else:
            by_id = {"sa": self.scaled_a, "sv": self.scaled_v, "ss": self.stable}[kind]
            by_id[rest[0]] = value


class AaveV3Reader(TaggedReader):
    """Reads one Aave v3 deployment (a PoolAddressesProvider) for a set of accounts."""

    _gas = _CHEAP

    def __init__(self, protocol: str, chain: str, provider: str, accounts: Sequence[Account]) -> None:
        self.protocol = protocol
        self.chain = chain
        self.provider = to_checksum_address(provider)
        self.accounts = list(accounts)
        # What earlier rounds learned; every round re-reads it and checks the assumption still holds.
        self.pool: str | None = None
        self.oracle: str | None = None
        self.revision: int | None = None
        self.reserves: tuple[str, ...] | None = None
        self.tokens: dict[str, tuple[int, str, str, str]] = {}
        self.symbols: dict[str, str] = {}
        self.user_config: dict[str, int] = {}
        self.categories: set[int] = set()
        self.price_sources: dict[int, str] = {}
        self.stable_live: set[str] = set()
        #: accounts the last parse could not value (a broken price feed), with the reason
        self.skipped: list[tuple[Account, str]] = []

    def _forget(self) -> None:
        """Drop everything learned about the Pool (its address or oracle changed)."""
        self.pool = self.oracle = None
        self.revision = None
        self.reserves = None
        self.tokens, self.symbols, self.user_config, self.price_sources = {}, {}, {}, {}
        self.categories, self.stable_live = set(), set()

    # --- building the round

    def _knowledge(self) -> tuple[Any, ...]:
        return (
            self.pool,
            self.oracle,
            self.revision,
            self.reserves,
            tuple(sorted(self.tokens.items())),
            frozenset(self.symbols),
            tuple(sorted(self.categories)),
            tuple(sorted(self.price_sources.items())),
            frozenset(self.stable_live),
            tuple(self.user_config.get(a.address) for a in self.accounts),
        )

    def calls(self) -> list[Call]:
        """The reads for this round, from what earlier rounds learned (the same list while nothing changed)."""
        if not self._replan(self._knowledge()):
            return self._calls
        self._add(("pool",), self.provider, PROVIDER.getPool.encode())
        self._add(("oracle",), self.provider, PROVIDER.getPriceOracle.encode())
        pool, oracle = self.pool, self.oracle
        if pool is None or oracle is None:
            return self._calls
        self._add(("rev",), pool, POOL.POOL_REVISION.encode())
        self._add(("list",), pool, POOL.getReservesList.encode(), _RESERVE)
        self._add(("unit",), oracle, ORACLE.BASE_CURRENCY_UNIT.encode())
        reserves, rev = self.reserves, self.revision
        if reserves is not None and rev is not None:
            for asset in reserves:
                self._add(("rd", asset), pool, POOL.getReserveData.encode(asset), _RESERVE)
                if asset not in self.symbols:
                    self._add(("sym", asset), asset, ERC20.symbol.encode(), _RESERVE)
            # One price call per asset, so that one broken feed only makes the accounts that use it unknown.
            for asset in dict.fromkeys((*reserves, *self.price_sources.values())):
                self._add(("price", asset), oracle, ORACLE.getAssetPrice.encode(asset), _CHEAP)
            for c in sorted(self.categories):
                if rev < REV_EMODE_BITMAP:
                    self._add(("ecat", c), pool, POOL.getEModeCategoryData.encode(c))
                else:
                    self._add(("ecfg", c), pool, POOL.getEModeCategoryCollateralConfig.encode(c))
                    self._add(("ebmp", c), pool, POOL.getEModeCategoryCollateralBitmap.encode(c))
            if rev < REV_EMODE_BITMAP:
                for asset in reserves:
                    if asset in self.tokens:
                        self._add(("ssup", asset), self.tokens[asset][2], SCALED.totalSupply.encode(), _RESERVE)
        by_id = {t[0]: (asset, t) for asset, t in self.tokens.items()}
        for acct in self.accounts:
            user = acct.address
            self._add(("ucfg", user), pool, POOL.getUserConfiguration.encode(user))
            self._add(("uem", user), pool, POOL.getUserEMode.encode(user))
            if rev is not None and rev not in VERIFIED_REVISIONS:
                # A revision the tests have not compared with a real Pool: ask the Pool too, and let it decide.
                self._add(("guad", user), pool, POOL.getUserAccountData.encode(user), 150_000)
            cfg, i = self.user_config.get(user, 0), 0
            while cfg:
                borrowing, collateral = cfg & 1, (cfg >> 1) & 1
                if i in by_id:
                    asset, (_, a_tok, s_tok, v_tok) = by_id[i]
                    if collateral:
                        self._add(("sa", user, i), a_tok, SCALED.scaledBalanceOf.encode(user), _BALANCE)
                    if borrowing:
                        self._add(("sv", user, i), v_tok, SCALED.scaledBalanceOf.encode(user), _BALANCE)
                        if asset in self.stable_live:
                            self._add(("ss", user, i), s_tok, SCALED.balanceOf.encode(user), _RESERVE)
                cfg >>= 2
                i += 1
        return self._calls

    # --- reading the answers

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        """Positions at `block`, or None when this round showed an assumption to be stale."""
        raw, users = self._split(got)
        return self._positions(raw, users, block)

    def _split(
        self, got: dict[tuple[Any, ...], tuple[bool, bytes]]
    ) -> tuple[dict[tuple[Any, ...], bytes], dict[str, _UserAnswers]]:
        """The market's answers by tag, and each account's own; a revert is fatal except for symbols and prices."""
        raw: dict[tuple[Any, ...], bytes] = {}
        users = {a.address: _UserAnswers() for a in self.accounts}
        for tag, (ok, data) in got.items():
            kind = tag[0]
            if not ok:
                if kind not in ("sym", "price"):
                    raise ReadError(f"{self.protocol}/{self.chain}: call {kind} {tag[1:]} reverted")
                data = b""  # a broken feed or symbol makes only what uses it unknown
            if kind == "guad":
                users[tag[1]].pool_view = data
                continue
            if kind not in _USER_WORDS:
                raw[tag] = data
                continue
            if len(data) < 32:
                raise ReadError(f"{self.protocol}/{self.chain}: call {kind} {tag[1:]} returned {len(data)} bytes")
            users[tag[1]].take(kind, tag[2:], int.from_bytes(data[:32], "big"))
        return raw, users

    def _positions(
        self, got: dict[tuple[Any, ...], bytes], users: dict[str, _UserAnswers], block: BlockRef
    ) -> list[Position] | None:
        fresh = True
        pool, oracle = word_address(got[("pool",)]), word_address(got[("oracle",)])
        if (pool, oracle) != (self.pool, self.oracle):
            # A new Pool or oracle: nothing learned about the old one can be trusted.
            self._forget()
            self.pool, self.oracle = pool, oracle
            return None
        rev = word(got[("rev",)])
        reserves = tuple(POOL.getReservesList.decode(got[("list",)])[0])
        if rev != self.revision:
            self.categories, self.price_sources, self.stable_live = set(), {}, set()
        if rev != self.revision or reserves != self.reserves:
            self.revision, self.reserves = rev, reserves
            fresh = False
        if not fresh:
            return None
        base_unit = word(got[("unit",)])
        # Reserve data: token addresses can only change by governance; a change means another round.
        reserve_words: dict[str, list[int]] = {}
        for asset in reserves:
            w = words(got[("rd", asset)])
            if len(w) < 11:
                raise ValueError(f"getReserveData({asset}) returned {len(w)} words")
            reserve_words[asset] = w
            toks = (w[7], *(to_checksum_address(x.to_bytes(20, "big")) for x in (w[8], w[9], w[10])))
            if self.tokens.get(asset) != toks:
                self.tokens[asset] = toks
                fresh = False
            if ("sym", asset) in got:
                self.symbols[asset] = symbol_or_prefix(True, got[("sym", asset)], asset)
        prices: dict[str, int | None] = {}
        for tag, data in got.items():
            if tag[0] == "price":
                prices[tag[1]] = word(data) if data else None
        emode: dict[int, EModeCategory] = {}
        broken_categories: set[int] = set()
        for c in sorted(self.categories):
            if rev < REV_EMODE_BITMAP:
                lt, source = _emode_legacy(got[("ecat", c)])
                if self.price_sources.get(c, "0x" + "0" * 40) != source and int(source, 16):
                    self.price_sources[c] = source
                    fresh = False
                has_source = bool(int(source, 16))
                if has_source and prices.get(source) is None:
                    broken_categories.add(c)
                emode[c] = EModeCategory(lt, (prices.get(source) or 0) if has_source else 0)
            else:
                cfg = words(got[("ecfg", c)])
                emode[c] = EModeCategory(cfg[1], 0, word(got[("ebmp", c)]))
        if rev < REV_EMODE_BITMAP:
            live = {a for a in reserves if ("ssup", a) in got and word(got[("ssup", a)]) > 0}
            if not live <= self.stable_live:
                fresh = False
            self.stable_live = live
        for acct in self.accounts:
            cfg, cat = users[acct.address].config, users[acct.address].emode
            if cfg is None or cat is None:
                return None  # the pool was not known when this round was planned
            known = self.user_config.get(acct.address)
            if known is None or cfg & ~known:
                fresh = False
            self.user_config[acct.address] = cfg
            if cat and cat not in self.categories:
                self.categories.add(cat)
                fresh = False
        if not fresh:
            return None
        by_id: dict[int, Reserve] = {}
        for asset in reserves:
            w = reserve_words[asset]
            conf = w[0]
            rid, a_tok, s_tok, v_tok = self.tokens[asset]
            by_id[rid] = Reserve(
                asset=asset,
                symbol=self.symbols.get(asset, asset[:8]),
                id=rid,
                decimals=_bits(conf, 48, 8),
                liquidation_threshold=_bits(conf, 16, 16),
                emode_category=_bits(conf, 168, 8),
                liquidity_index=w[1],
                liquidity_rate=w[2],
                borrow_index=w[3],
                borrow_rate=w[4],
                last_update=w[6],
                a_token=a_tok,
                stable_debt_token=s_tok,
                variable_debt_token=v_tok,
                price=prices.get(asset) or 0,
            )
        market = Market(rev, block.timestamp, base_unit, by_id, emode)
        out = []
        self.skipped = []
        for acct in self.accounts:
            u = users[acct.address]
            cfg, cat = u.config, u.emode
            assert cfg is not None and cat is not None  # checked above: None returned before valuing anyone
            broken = [r.symbol for r in by_id.values() if (cfg >> (2 * r.id)) & 3 and prices.get(r.asset) is None]
            if broken or cat in broken_categories:
                what = ", ".join(broken) or f"eMode category {cat}'s price source"
                self.skipped.append((acct, f"{self.protocol}/{self.chain}: the oracle price of {what} reverted"))
                continue
            sim = AaveSimulator(market, cfg, cat, u.scaled_a, u.scaled_v, u.stable, block.timestamp)
            out.append(self._position(acct, sim, block, u.pool_view))
        return out

    def _position(self, acct: Account, sim: AaveSimulator, block: BlockRef, pool_view: bytes | None) -> Position:
        collateral, debt = [], []
        valued = sim.valued()
        for v in valued:
            r = v.reserve
            if v.collateral:
                collateral.append(
                    Leg(
                        r.asset,
                        r.symbol,
                        r.decimals,
                        v.collateral,
                        v.price,
                        v.collateral_value,
                        v.liquidation_threshold,
                    )
                )
            if v.debt:
                debt.append(Leg(r.asset, r.symbol, r.decimals, v.debt, v.price, v.debt_value))
        hf = sim.account(valued)[3]
        details: dict[str, Any] = {
            "pool": self.pool,
            "oracle": self.oracle,
            "pool_revision": sim.market.revision,
            "emode": sim.emode,
        }
        if pool_view is not None:
            # Unverified revision: the Pool's own getUserAccountData is the verdict; the replay only explains it.
            pool_hf = word(pool_view, 5)
            replay = MAX_UINT256 if hf is None else hf
            details["pool_health_factor"] = pool_hf
            details["replay_matches_pool"] = pool_hf == replay
            if pool_hf != replay:
                hf = None if pool_hf == MAX_UINT256 else pool_hf
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=acct.address,
            label=acct.label,
            collateral=tuple(collateral),
            debt=tuple(debt),
            health=hf,
            liquidatable=hf is not None and hf < WAD,
            base_unit=sim.market.base_unit,
            base_currency="USD" if sim.market.base_unit == 10**8 else "base",
            block=block,
            details=details,
            simulator=sim,
        )


def _emode_legacy(data: bytes) -> tuple[int, str]:
    """(liquidation threshold, price source) from getEModeCategoryData (revisions before 5)."""
    (cat,) = POOL.getEModeCategoryData.decode(data)
    return int(cat[1]), to_checksum_address(cat[3])


def make_reader(dep: Any, accounts: Sequence[Account]) -> AaveV3Reader:
    """The reader of a resolved Aave v3 deployment (Aave and its forks: Spark, ...)."""
    return AaveV3Reader(dep.name, dep.chain, dep.address, list(accounts))


register(ChainProtocol("aave_v3", "pool_addresses_provider", make_reader))
