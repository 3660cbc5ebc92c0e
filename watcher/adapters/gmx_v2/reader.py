"""GMX v2 reader: plans the batch (positions, DataStore values, feeds, position infos) and parses its answers.

Position infos are asked at the feed prices of the block being read. A call's arguments cannot depend on another
call of the same batch, so the infos are planned with the latest prices seen; when the block's feeds answer other
prices (a move since the last check), the round's answers are held and one more round at the same block asks only
the infos (and the feed answers, to confirm them) at the new prices. A check is one round without a move, two with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import address_word, symbol_or_prefix, words
from watcher.adapters.base import Account, Call, ReadError, TaggedReader
from watcher.adapters.gmx_v2.accrual import MarketAccrual, accrual_keys, market_accrual
from watcher.adapters.gmx_v2.keys import (
    DATA_STORE,
    ERC20,
    FEED,
    FLOAT,
    MAX_POSITIONS,
    READER,
    ZERO,
    GmxMarket,
    MarketParams,
    decimals_from_multiplier,
    key_min_collateral_usd,
    market_key,
    max_pnl_factor_key,
    open_interest_in_tokens_key,
    open_interest_key,
    pool_amount_key,
    signed,
    token_key,
    word,
)
from watcher.adapters.gmx_v2.positions import build_position
from watcher.model import BlockRef, Position

Answers = dict[tuple[Any, ...], tuple[bool, bytes]]


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
        self.prices: dict[str, int] = {}  #: the latest feed prices seen: the infos are planned with them
        self.account_markets: dict[str, tuple[str, ...]] = {}
        #: account -> {token: price} its planned getAccountPositionInfoList passes; its answer is priced by them
        self.asked: dict[str, dict[str, int]] = {}
        #: a round whose infos were priced off the block's feeds: its block, answers, and the accounts to ask again
        self._held: tuple[BlockRef, Answers, tuple[str, ...]] | None = None

    # --- planning

    def _tokens(self) -> list[str]:
        out: dict[str, None] = {}
        for m in self.markets.values():
            if m is not None:
                out.update(dict.fromkeys((m.index, m.long, m.short)))
        return list(out)

    def _uint(self, key: bytes) -> None:
        tag = ("uint", key)
        if tag not in self._plan:
            self._add(tag, self.data_store, DATA_STORE.getUint.encode(word(key)))

    def calls(self) -> list[Call]:
        """This round's reads; the same list while nothing new was learned and prices are unchanged."""
        if self._held is not None:
            return self._reprice_calls(self._held[2])
        state = (
            tuple(self.markets.items()),
            tuple(self.feeds.items()),
            tuple(self.decimals.items()),
            tuple(self.prices.items()),
            tuple(self.account_markets.items()),
        )
        if not self._replan(state):
            return self._calls
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
            self._add(("feed", t), ds, DATA_STORE.getAddress.encode(word(token_key("PRICE_FEED", t))))
            self._add(("mult", t), ds, DATA_STORE.getUint.encode(word(token_key("PRICE_FEED_MULTIPLIER", t))))
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
            for key in accrual_keys(m, info):  # borrowing and funding state: fees over time (the forecast)
                self._uint(key)
            for is_long in (True, False):
                self._uint(market_key("MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER", m, is_long))
                self._uint(max_pnl_factor_key("MAX_PNL_FACTOR_FOR_TRADERS", m, is_long))
                for collateral in dict.fromkeys((info.long, info.short)):
                    self._uint(open_interest_key(m, collateral, is_long))
                    self._uint(open_interest_in_tokens_key(m, collateral, is_long))
        self.asked = {}
        for acct in self.accounts:
            self._info(acct.address)
        return self._calls

    def _reprice_calls(self, accounts: tuple[str, ...]) -> list[Call]:
        """The second round of a check after a price move: the feeds' answers again, and the infos at their prices."""
        self._new_plan()  # with no key: the full plan is rebuilt next time
        for t in self._tokens():
            if t in self.feeds:
                self._add(("answer", t), self.feeds[t][0], FEED.latestRoundData.encode(), 50_000)
        for address in accounts:
            self._info(address)
        return self._calls

    def _info(self, account: str) -> None:
        """getAccountPositionInfoList at the latest prices, once every market of the account has them."""
        markets = self.account_markets.get(account, ())
        if not markets or not all(self._prices_known(m) for m in markets):
            return
        args = [self._market_prices(m) for m in markets]
        data = READER.getAccountPositionInfoList.encode(
            self.data_store, self.referral_storage, account, list(markets), args, ZERO, 0, MAX_POSITIONS
        )
        self._add(("info", account), self.reader, data, 3_000_000)
        self.asked[account] = {t: self.prices[t] for m in markets for t in self._market_tokens(m)}

    def _prices_known(self, market: str) -> bool:
        info = self.markets.get(market)
        return info is not None and all(t in self.prices for t in (info.index, info.long, info.short))

    def _market_tokens(self, market: str) -> tuple[str, str, str]:
        info = self.markets[market]
        assert info is not None
        return info.index, info.long, info.short

    def _market_prices(self, market: str) -> tuple[tuple[int, int], ...]:
        return tuple((self.prices[t], self.prices[t]) for t in self._market_tokens(market))

    # --- parsing

    def _parse(self, got: Answers, block: BlockRef) -> list[Position] | None:
        if self._held is not None:
            held_block, held, _ = self._held
            self._held = None
            if (held_block.number, held_block.hash) != (block.number, block.hash):
                return None  # the held round belongs to a check that did not finish: read everything again
            got = held | got  # this round's feed answers and infos replace the held ones
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
                    self.decimals[t] = decimals_from_multiplier(mult, fdec)
                learned = True
        now: dict[str, int] = {}
        for t in self._tokens():
            if t in broken or ("answer", t) not in got:
                continue
            ok, data = got[("answer", t)]
            if not ok or len(data) < 160:
                broken[t] = "latestRoundData reverted"
                continue
            answer, updated = signed(words(data)[1]), words(data)[3]
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
        accruals = self._accruals(got)
        [min_usd] = self._required(got, ("uint", key_min_collateral_usd()), 1)
        self.skipped = []
        valued: list[Account] = []
        repriced: list[str] = []
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
            if rows and ("info", acct.address) not in got:
                self.prices.update(now)
                return None
            asked = self.asked.get(acct.address, {})
            if rows and any(asked.get(t) != now[t] for t in need):
                # Pending borrowing, funding and impact depend on prices: the info must be priced by this block.
                repriced.append(acct.address)
            valued.append(acct)
        self.prices.update(now)
        if repriced:
            self._held = (block, got, tuple(repriced))
            return None
        out = []
        for acct in valued:
            rows = positions[acct.address]
            infos: list[tuple[Any, ...]] = []
            if rows:
                tag = ("info", acct.address)
                ok, data = got[tag]
                if not ok:
                    raise ReadError(
                        f"{self.protocol}/{self.chain}: getAccountPositionInfoList({acct.address}) reverted"
                    )
                [infos] = READER.getAccountPositionInfoList.decode(data)
            out.append(build_position(self, acct, rows, list(infos), now, params, min_usd, block, accruals))
        return out

    def _accruals(self, got: Answers) -> dict[str, MarketAccrual]:
        """Each market's stored borrowing and funding state."""
        out = {}
        for m, info in self.markets.items():
            assert info is not None
            out[m] = market_accrual(lambda k: self._required(got, ("uint", k), 1)[0], m, info)
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
