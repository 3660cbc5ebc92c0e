"""One coordinator per source, in the spirit of Home Assistant's DataUpdateCoordinator.

A source owns its reads, their cadence and its freshness: a chain checks on every new head (coalesced while a check
runs) and at least once per interval; a venue checks on its interval. Each result goes to `publish` (the engine's
listeners); a committed result that read the source is a good read, and a source with no good read for its bound
is stale: the watchdog publishes it as degraded, its positions unknown, whatever stopped the reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from watcher.adapters.base import Reader, VenueReader
from watcher.chain import ChainClient
from watcher.check import CheckResult, Unreadable, check_chains, check_venues
from watcher.engine.heads import HeadFollower, first_done, sleep_or_stop

log = logging.getLogger("watcher")

#: publish(source name, result) -> whether the result was committed
Publish = Callable[[str, CheckResult], bool]


class Source:
    """What every source shares: a name, a watchdog bound, its last good read (monotonic clock) and check count."""

    name: str

    def __init__(self, name: str, stale_after: float, interval: float) -> None:
        self.name = name
        self.stale_after = stale_after
        self.interval = interval
        #: when the last committed check with a good read finished (or the daemon started); monotonic, because a
        #: wall clock stepped back must not make a stall look young
        self.last_good = time.monotonic()
        self.stalled = False  #: the watchdog reported it since its last good read
        self.checks = 0  #: checks run (the benchmark's count)

    async def read(self) -> CheckResult:
        """Read every position of the source (network only, no database)."""
        raise NotImplementedError

    def accounts_unread(self, reason: str) -> list[Unreadable]:
        """Every reader of the source, unread for `reason`."""
        raise NotImplementedError

    async def check(self, publish: Publish) -> None:
        """One whole check: read, publish, and feed the watchdog; a failure is logged and the next check comes."""
        try:
            result = await self.read()
            committed = publish(self.name, result)
        except Exception:
            log.exception("check failed", extra={"chain": self.name})
            return
        degraded = self.name in result.degraded or any(u.chain == self.name for u in result.unreadable)
        if committed and not degraded:
            self.last_good = time.monotonic()
            self.stalled = False

    def stale(self, now: float) -> CheckResult | None:
        """The degraded result the watchdog publishes when no good read came for `stale_after` (once per stall)."""
        age = now - self.last_good
        if age <= self.stale_after or self.stalled:
            return None
        reason = f"{self.name}: no good read for {age:.0f} s (stale_after {self.stale_after:g} s)"
        return CheckResult(unreadable=self.accounts_unread(reason), degraded={self.name: reason})

    async def follow(self, stop: asyncio.Event, publish: Publish) -> None:
        """Check once per interval until `stop` (never two at once; a late check is not made up for)."""
        while not stop.is_set():
            started = time.monotonic()
            await self.check(publish)
            self.checks += 1
            await sleep_or_stop(stop, self.interval - (time.monotonic() - started))


class ChainSource(Source):
    """A chain: every reader of it in one batched read per check, a check per new head when heads are followed."""

    def __init__(
        self,
        name: str,
        client: ChainClient,
        readers: Sequence[Reader],
        *,
        interval: float,
        stale_after: float,
        heads: HeadFollower | None,
    ) -> None:
        super().__init__(name, stale_after, interval)
        self.client = client
        self.readers = list(readers)
        self.heads = heads  #: what wakes its checks between intervals, or None for the interval alone

    async def read(self) -> CheckResult:
        """Read every position on the chain at its head."""
        return await check_chains({self.name: self.client}, self.readers)

    def accounts_unread(self, reason: str) -> list[Unreadable]:
        """Every reader of the chain, unread."""
        return [Unreadable(r.protocol, self.name, tuple(getattr(r, "accounts", ())), reason) for r in self.readers]

    async def follow(self, stop: asyncio.Event, publish: Publish) -> None:
        """One check per new head (coalesced while a check runs), and at least one per interval."""
        if self.heads is None:
            await super().follow(stop, publish)
            return
        heads = self.heads
        follower = asyncio.create_task(heads.run(stop))
        try:
            while not stop.is_set():
                started = time.monotonic()
                await self.check(publish)
                self.checks += 1
                # A head seen while the check ran wakes the next one at once; many heads, one check.
                await first_done(stop.wait(), heads.wait(self.interval - (time.monotonic() - started)))
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


class VenueSource(Source):
    """An off-chain venue, read over HTTP through the daemon's aiohttp session."""

    def __init__(
        self, name: str, reader: VenueReader, session: Callable[[], Any], *, interval: float, stale_after: float
    ) -> None:
        super().__init__(name, stale_after, interval)
        self.reader = reader
        self.session = session  #: the daemon's session, made when it runs (None: check_venues makes its own)

    async def read(self) -> CheckResult:
        """Read the venue's accounts."""
        return await check_venues([self.reader], self.session())

    def accounts_unread(self, reason: str) -> list[Unreadable]:
        """The venue's accounts, unread."""
        return [Unreadable(self.reader.protocol, self.name, tuple(self.reader.accounts), reason)]
