"""`watcher run`: a coordinator per source, the engine's listeners, the outbox relay and a watchdog, on one loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher.adapters.base import Reader, VenueReader
from watcher.alerts import AlertState, Rules
from watcher.chain import ChainClient
from watcher.check import CheckResult
from watcher.config import Config
from watcher.engine.alerting import Alerting
from watcher.engine.documents import Documents
from watcher.engine.heads import HeadFollower
from watcher.engine.health import SourceHealth
from watcher.engine.history import History
from watcher.engine.live import LivePositions
from watcher.engine.probabilities import Probabilities
from watcher.engine.publish import Publisher
from watcher.engine.rules import RuleBook
from watcher.engine.sources import ChainSource, Source, VenueSource
from watcher.model import Position
from watcher.notify.base import Channel
from watcher.notify.quiet import quiet_hold
from watcher.notify.relay import Relay
from watcher.notify.routing import fallback_map, routing
from watcher.notify.simulate_command import simulate_with
from watcher.notify.telegram_updates import build_listener
from watcher.store import Store

log = logging.getLogger("watcher")

#: Seconds a commit waits for a database another process holds locked before it fails (and is retried).
BUSY_TIMEOUT = 1.0

#: a venue's watchdog bound when it has no config entry (3 intervals of 5 s and a timeout)
_VENUE_STALE = 3 * 5.0 + 10.0


class Daemon:
    """Wires the sources to the engine's listeners and runs them with the relay and the watchdog.

    Each source (a chain or a venue) checks on its own cadence, on the event loop, with async I/O: one slow source
    never delays another, and delivery runs as its own task, so no check waits for a message to go out. Every
    check's outcome is one SQLite transaction; memory follows the database (see watcher/engine/publish.py).
    """

    def __init__(
        self,
        cfg: Config,
        clients: dict[str, ChainClient],
        readers: Sequence[Reader],
        store: Store,
        channels: dict[str, Channel],
        *,
        clock: Callable[[], float] = time.time,
        venues: Sequence[VenueReader] = (),
        ws_urls: dict[str, str | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clients = clients
        self.readers = list(readers)
        self._session: Any = None  #: the aiohttp session venues are read through, made in run()
        self.store = store
        # A locked database must fail a commit quickly (it is retried at the next check), not hold the loop.
        store.set_busy_timeout(BUSY_TIMEOUT)
        self.channels = channels
        self.clock = clock
        # A fallback copy is made only where the target lacks the alert (has_copy): with routing by levels, that is
        # also an alert the target's levels left out (delivering beats routing; watcher/notify/routing.py).
        fallback = fallback_map(cfg.notify, list(channels))
        n = cfg.notify
        self.relay = Relay(
            store.db,
            channels,
            fallback=fallback,
            retry_initial=n.retry_initial,
            retry_max=n.retry_max,
            clock=clock,
            hold=quiet_hold(n, list(channels)),
        )
        self.book = RuleBook(cfg)
        self.history = History(store, self.book, cfg.storage)
        #: liquidation probabilities: estimated as a check is staged, their price histories read after it commits
        self.probabilities = Probabilities(cfg, clients, store, clock(), venues=venues, session=lambda: self._session)
        self.alerting = Alerting(store, self.book, self.history.last, self.probabilities)
        self.documents = Documents(store, self.book, cfg, self.probabilities)
        self.health = SourceHealth(store)
        self.latest = LivePositions(self.book, cfg.thresholds.target)  # what GET /positions/{id}/simulate replays
        wake = self.relay.wake if channels else (lambda: None)
        self.publisher = Publisher(
            store,
            [self.probabilities, self.alerting, self.documents, self.history, self.health, self.latest],
            list(channels),
            cfg.thresholds.target,
            clock,
            wake,
            route=routing(n, list(channels)),
        )
        #: what the API in the same process shows beside the stored state: the database's and the channels' health
        self.live: dict[str, Any] = {
            "storage": self.publisher.storage,
            "notify": self.relay.health,
            "positions": self.latest,
        }
        self.relay.on_storage = self.publisher.storage_report
        #: Telegram commands (notify.telegram.commands), or None
        self.commands = build_listener(cfg, store, channels, clock, simulate=simulate_with(self.latest))
        self.sources: dict[str, Source] = {}
        #: sources with a committed check in this run (sd_notify's READY=1 waits for all of them)
        self.committed: set[str] = set()
        chains = sorted({r.chain for r in self.readers})
        if ws_urls is None:
            ws_urls = {c: cfg.chains[c].websocket(c) for c in chains}
        for c in chains:
            cc = cfg.chains[c]
            heads = (
                HeadFollower(c, clients[c], cc.head_poll_seconds(), ws_urls.get(c), cc.timeout)
                if cc.follow_heads
                else None
            )
            mine = [r for r in self.readers if r.chain == c]
            self.sources[c] = ChainSource(
                c, clients[c], mine, interval=cc.check_interval(), stale_after=cc.watchdog_after(), heads=heads
            )
        for v in venues:
            vc = cfg.venues.get(v.chain)
            self.sources[v.chain] = VenueSource(
                v.chain,
                v,
                lambda: self._session,
                interval=vc.interval if vc is not None else 5.0,
                stale_after=vc.watchdog_after() if vc is not None else _VENUE_STALE,
            )

    # --- what tests, benchmarks and the API ask of a running daemon

    @property
    def states(self) -> dict[str, AlertState]:
        """Each position's alert state, as committed."""
        return self.alerting.states

    @property
    def status(self) -> dict[str, dict[str, Any]]:
        """Each source's status row, as committed."""
        return self.health.status

    @property
    def rules(self) -> Rules:
        """The global alert rules."""
        return self.book.rules

    @property
    def heads(self) -> dict[str, HeadFollower | None]:
        """Per chain, what wakes its checks: new heads (over ws_url or polled), or None for the interval alone."""
        return {n: s.heads for n, s in self.sources.items() if isinstance(s, ChainSource)}

    @property
    def chain_checks(self) -> dict[str, int]:
        """Checks run per chain."""
        return {n: s.checks for n, s in self.sources.items() if isinstance(s, ChainSource)}

    def rules_for(self, p: Position) -> Rules:
        """The rules the position is judged by."""
        return self.book.rules_for(p)

    # --- one check of one source

    def process(self, source: str, result: CheckResult) -> bool:
        """Publish a result: evaluate it and commit state, alerts, outbox rows and history in one transaction."""
        committed = self.publisher.publish(source, result)
        if committed:
            self.committed.add(source)
        return committed

    async def read(self, source: str) -> CheckResult:
        """Read a source (network only, no database)."""
        return await self.sources[source].read()

    async def check_chain(self, source: str) -> CheckResult:
        """Read, then publish: one whole check."""
        result = await self.read(source)
        self.process(source, result)
        return result

    async def run_chain(self, source: str) -> None:
        """One check as the source's own loop runs it (failures logged, the watchdog fed)."""
        await self.sources[source].check(self.process)

    read_venue = read
    run_venue = run_chain

    async def prune(self) -> None:
        """Drop history older than the retention (a coroutine: the scheduler runs it on the loop's thread)."""
        try:
            removed = self.store.prune_history(self.clock() - self.cfg.storage.retention_days * 86400)
        except (sqlite3.Error, OSError) as exc:
            log.error("prune failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        if removed:
            log.info("pruned history", extra={"rows": removed})

    async def relay_now(self) -> None:
        """Deliver what is due now, once (tests and `watcher test-notify`; the daemon's relay runs on its own)."""
        await self.relay.run_once()

    def watchdog(self) -> None:
        """Publish every source whose last good read is older than its bound as degraded, its positions unknown.

        Whatever stopped the reads (a hung request, a stalled loop, a check that keeps failing to commit), the user
        hears "degraded" and no position reads as healthy. Once per stall: a good read ends it.
        """
        now = time.monotonic()
        for source in self.sources.values():
            result = source.stale(now)
            if result is not None and self.process(source.name, result):
                source.stalled = True
                log.warning("watchdog", extra={"chain": source.name, "reason": result.degraded[source.name]})

    # --- the asyncio side

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (SIGINT/SIGTERM in `watcher run`)."""
        import aiohttp

        self._session = aiohttp.ClientSession()
        try:
            await self._run(stop)
        finally:
            await self._session.close()

    async def _run(self, stop: asyncio.Event) -> None:
        scheduler = AsyncIOScheduler()
        # Checks run in loops of their own on the monotonic clock (a wall clock stepped back must not pause them);
        # the scheduler only prunes history.
        scheduler.add_job(
            self.prune, "interval", seconds=3600, coalesce=True, max_instances=1, next_run_time=datetime.now(UTC)
        )
        scheduler.start()
        tasks = [asyncio.create_task(s.follow(stop, self.process), name=f"source:{n}") for n, s in self.sources.items()]
        relay = asyncio.create_task(self.relay.run_forever(stop))
        watchdog = asyncio.create_task(self._watchdog_loop(stop))
        if self.commands is not None:
            tasks.append(asyncio.create_task(self.commands.run(stop), name="telegram-commands"))
        if self.probabilities.enabled:
            tasks.append(asyncio.create_task(self.probabilities.run(stop), name="price-histories"))
        log.info(
            "started",
            extra={
                "chains": sorted(self.heads),
                "venues": sorted(n for n, s in self.sources.items() if isinstance(s, VenueSource)),
                "channels": list(self.channels),
            },
        )
        await stop.wait()
        scheduler.shutdown(wait=False)
        await asyncio.gather(relay, watchdog, *tasks)
        log.info("stopped")

    async def _watchdog_loop(self, stop: asyncio.Event) -> None:
        # ticks at a fraction of the shortest bound, so a stall is reported within about a quarter of it
        tick = max(0.1, min([s.stale_after for s in self.sources.values()] or [1.0]) / 4)
        while not stop.is_set():
            try:
                self.watchdog()
            except Exception:
                log.exception("watchdog failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM stop the daemon gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


__all__ = ["Daemon", "install_signal_handlers"]
