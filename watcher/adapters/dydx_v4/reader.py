"""The dYdX v4 reader: the indexer over HTTP, its freshness, the subaccounts to read and their positions."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from fractions import Fraction
from typing import Any

import aiohttp

from watcher.adapters.base import Account, ReadError
from watcher.adapters.dydx_v4.candles import hourly_closes
from watcher.adapters.dydx_v4.parse import (
    MAX_SUBACCOUNT,
    PROTOCOL,
    Market,
    Subaccount,
    _field,
    parse_market,
    parse_subaccount,
    validate_address,
)
from watcher.adapters.dydx_v4.position import position_of
from watcher.adapters.http import DEFAULT_MAX_BYTES, all_answers, request_json
from watcher.model import Position


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    what: str,
    timeout: float,
    missing_ok: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Any:
    """One GET as JSON; transport, status and JSON problems become ReadError (404 gives None when `missing_ok`)."""
    return await request_json(
        session, "GET", url, venue=PROTOCOL, what=what, timeout=timeout, missing_ok=missing_ok, max_bytes=max_bytes
    )


class DydxV4Reader:
    """Reads dYdX v4 subaccounts through an indexer; a VenueReader (watcher.adapters.base)."""

    protocol = PROTOCOL

    def __init__(
        self,
        name: str,
        base_url: str,
        accounts: list[Account],
        subaccounts: Mapping[str, list[int]] | None = None,
        timeout: float = 10.0,
        max_age: float = 120.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Validate the accounts (dydx1... addresses) and the subaccount numbers to read for each (default [0])."""
        self.max_age = max_age  #: seconds: an indexer whose latest block is older serves stale state: unknown
        self.chain = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes  #: bytes one answer may have
        self.accounts = [Account(validate_address(a.address), a.label) for a in accounts]
        subs = {validate_address(k): list(v) for k, v in (subaccounts or {}).items()}
        self.subaccounts: dict[str, list[int]] = {}
        for acct in self.accounts:
            nums = sorted(set(subs.get(acct.address, [0])))
            for n in nums:
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SUBACCOUNT:
                    raise ValueError(f"{PROTOCOL}: {acct.address}: subaccount number {n!r} not in 0..{MAX_SUBACCOUNT}")
            self.subaccounts[acct.address] = nums
        self.skipped: list[tuple[Account, str]] = []

    async def hourly_closes(
        self, session: aiohttp.ClientSession, ticker: str, count: int = 100
    ) -> list[tuple[int, Fraction]]:
        """The market's last `count` hourly (start, close) pairs from this venue's indexer, oldest first."""
        return await hourly_closes(
            session, self.base_url, ticker, count, timeout=self.timeout, max_bytes=self.max_bytes
        )

    def _check_fresh(self, raw: Any, now: float) -> None:
        """An indexer stuck behind the chain answers happily with old state: that is unknown, not healthy."""
        stamp = _field(raw, "time", "height")
        try:
            at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ReadError(f"{PROTOCOL}: height: time {str(stamp)[:40]!r} is not an ISO-8601 time") from None
        age = now - at
        if age > self.max_age:
            height = raw.get("height") if isinstance(raw, Mapping) else None
            raise ReadError(
                f"{PROTOCOL}: the indexer's latest block {height} is {age:.0f} s old (max {self.max_age:.0f} s): "
                "its state is stale"
            )

    def _targets(self) -> list[tuple[Account, int]]:
        return [(a, n) for a in self.accounts for n in self.subaccounts[a.address]]

    async def read(self, session: aiohttp.ClientSession) -> list[Position]:
        """Positions now: one per subaccount; ReadError when an answer cannot be trusted."""
        targets = self._targets()
        base = self.base_url + "/v4"
        raw_height, raw_markets, *raw_subs = await all_answers(
            _get(session, f"{base}/height", "height", self.timeout, max_bytes=self.max_bytes),
            _get(session, f"{base}/perpetualMarkets", "perpetualMarkets", self.timeout, max_bytes=self.max_bytes),
            *(
                _get(
                    session,
                    f"{base}/addresses/{a.address}/subaccountNumber/{n}",
                    f"subaccount {n}",
                    self.timeout,
                    True,
                    self.max_bytes,
                )
                for a, n in targets
            ),
        )
        fetched_at = int(time.time())
        self._check_fresh(raw_height, time.time())
        table = _field(raw_markets, "markets", "perpetualMarkets")
        if not isinstance(table, Mapping):
            raise ReadError(f"{PROTOCOL}: perpetualMarkets: markets is not an object")
        skipped: list[tuple[Account, str]] = []
        subs: list[tuple[Account, Subaccount]] = []
        for (acct, n), body in zip(targets, raw_subs, strict=True):
            if body is None:
                skipped.append((acct, f"subaccount {n}: the indexer has no such subaccount (404)"))
                continue
            sub = parse_subaccount(acct.address, n, body)
            if sub.other_assets:
                # the chain's margin counts USDC only today; another asset would make our figure wrong, not unknown
                skipped.append((acct, f"subaccount {n}: non-USDC assets {', '.join(sub.other_assets)} not valued"))
                continue
            subs.append((acct, sub))
        markets: dict[str, Market] = {}
        for _, sub in subs:
            for h in sub.holdings:
                if h.market in markets:
                    continue
                if h.market not in table:
                    raise ReadError(f"{PROTOCOL}: unknown market {h.market!r} (not in perpetualMarkets)")
                markets[h.market] = parse_market(h.market, table[h.market])
        out = [position_of(sub, markets, acct, self.chain, fetched_at) for acct, sub in subs]
        self.skipped = skipped
        return out


def make_reader(
    name: str,
    base_url: str,
    accounts: Sequence[Account],
    subaccounts: Mapping[str, list[int]] | None = None,
    timeout: float = 10.0,
    max_age: float = 120.0,
) -> DydxV4Reader:
    """A DydxV4Reader from a venue's settings."""
    return DydxV4Reader(name, base_url, list(accounts), subaccounts, timeout, max_age)


def make_venue_reader(venue: Any, accounts: Sequence[Account]) -> DydxV4Reader:
    """The reader of a resolved [venues.<name>] of dYdX v4: each account's subaccounts from the config."""
    subaccounts = {a.address: list(a.subaccounts) for a in venue.accounts}
    return DydxV4Reader(
        venue.name, venue.base_url, list(accounts), subaccounts, venue.timeout, venue.max_age, venue.max_response_bytes
    )
