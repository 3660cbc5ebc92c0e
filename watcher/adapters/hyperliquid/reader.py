"""The Hyperliquid reader: the info API at a configurable base URL, read into Positions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from watcher.adapters.base import Account
from watcher.adapters.http import DEFAULT_MAX_BYTES
from watcher.adapters.hyperliquid.fetch import (
    fetch_state,
)
from watcher.adapters.hyperliquid.parse import (
    PROTOCOL,
)
from watcher.adapters.hyperliquid.position import positions_from
from watcher.model import Position


class HyperliquidReader:
    """Hyperliquid accounts read over the info API at `base_url` (configurable, so tests serve it on 127.0.0.1)."""

    protocol = PROTOCOL

    def __init__(
        self,
        name: str,
        base_url: str,
        accounts: Sequence[Account],
        timeout: float = 10.0,
        max_age: float = 120.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_bytes = max_bytes  #: bytes one answer may have
        self.max_age = max_age  #: seconds: older state from the venue is unknown, never healthy
        self.chain = name
        self.base_url = base_url
        self.accounts = list(accounts)
        self.timeout = timeout
        self.skipped: list[tuple[Account, str]] = []

    async def read(self, session: aiohttp.ClientSession) -> list[Position]:
        """Every account's positions now; ReadError when any answer cannot be trusted."""
        # the info API documents users as lowercase hex; config addresses are checksummed
        users = [a.address.lower() for a in self.accounts]
        snap = await fetch_state(session, self.base_url, users, self.timeout, self.max_age, self.max_bytes)
        return positions_from(snap, self.accounts, self.chain)


def make_venue_reader(venue: Any, accounts: Sequence[Account]) -> HyperliquidReader:
    """The reader of a resolved [venues.<name>] of Hyperliquid."""
    return HyperliquidReader(
        venue.name, venue.base_url, list(accounts), venue.timeout, venue.max_age, venue.max_response_bytes
    )
