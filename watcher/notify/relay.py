"""The relay: drains the outbox through the channels, with retries, backoff and a fallback channel per channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from watcher.notify.base import Channel, PermanentFailure, TemporaryFailure, log
from watcher.notify.outbox import OutboxRow, due, enqueue, mark_delivered, mark_failed, mark_retry, next_due_at


@dataclass
class RelayReport:
    """What one pass of the relay did: rows delivered, rescheduled, given up, and fallback rows added."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    fell_back: int = 0


class Relay:
    """Delivers due outbox rows at least once: a row is marked delivered only after its channel accepted it."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        channels: dict[str, Channel],
        *,
        fallback: dict[str, str] | None = None,
        max_attempts: int = 8,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        fallback = dict(fallback or {})
        for source, target in fallback.items():
            if target == source:
                raise ValueError(f"notify: channel {source!r} cannot be its own fallback")
            if target not in channels:
                raise ValueError(f"notify: the fallback of {source!r} is {target!r}, which is not a configured channel")
        if max_attempts < 1:
            raise ValueError("notify: max_attempts must be at least 1")
        # The relay commits on this connection after every row: give it a Database of its own, or never keep a
        # transaction open across an await on a shared one (the relay's commit would end it half done).
        self.db = db
        self.channels = dict(channels)
        self.fallback = fallback
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        self._wake: asyncio.Event | None = None

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt: exponential, capped, but never less than asked."""
        exponential = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        return max(retry_after or 0.0, exponential)

    async def run_once(self) -> RelayReport:
        """Try every due row once (channels side by side, each channel's rows in order) and report what happened."""
        report = RelayReport()
        by_channel: dict[str, list[OutboxRow]] = {}
        for row in due(self.db, self.clock()):
            by_channel.setdefault(row.channel, []).append(row)
        # A slow channel (Telegram's pacing, an SMTP timeout) must not hold up the others' alerts.
        async with asyncio.TaskGroup() as group:
            for name, rows in by_channel.items():
                group.create_task(self._drain(name, rows, report))
        return report

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Run passes until `stop` is set, sleeping up to `interval` (less if a row falls due sooner) between them."""
        while not stop.is_set():
            pause = interval
            try:
                await self.run_once()
                next_at = next_due_at(self.db)
                if next_at is not None:
                    pause = min(interval, max(0.0, next_at - self.clock()))
            except Exception as exc:
                # Channel errors never get here; this is the database (locked, disk full). Keep going: the rows are
                # still in it, and the next pass may succeed.
                log.error("notify: relay pass failed: %s: %s", type(exc).__name__, exc)
            await self._pause(stop, pause)

    def wake(self) -> None:
        """Start the next pass of run_forever now (call it after committing new outbox rows)."""
        self._wake_event().set()

    async def _drain(self, name: str, rows: list[OutboxRow], report: RelayReport) -> None:
        channel = self.channels.get(name)
        for row in rows:
            if channel is None:
                self._give_up(row, f"no channel named {name!r} is configured", report, count_attempt=False)
            else:
                await self._deliver(channel, row, report)

    async def _deliver(self, channel: Channel, row: OutboxRow, report: RelayReport) -> None:
        try:
            await channel.send(row.message)
        except TemporaryFailure as exc:
            self._retry(row, str(exc), exc.retry_after, report)
        except PermanentFailure as exc:
            self._give_up(row, str(exc), report)
        except Exception as exc:
            # A channel bug must not stop the relay. Its text is left out: only our own failures are known to be
            # free of secrets.
            self._retry(row, f"{row.channel}: unexpected {type(exc).__name__}", None, report)
        else:
            # Committed at once: a crash before this line means the row is sent again after a restart (at least once,
            # never lost), and committing now keeps that window to this one message.
            with self.db.conn:
                mark_delivered(self.db, row.id, self.clock())
            report.delivered += 1
            log.info("notify: delivered outbox row %d (alert %s) via %s", row.id, row.alert_id, row.channel)

    def _retry(self, row: OutboxRow, error: str, retry_after: float | None, report: RelayReport) -> None:
        attempts = row.attempts + 1
        if attempts >= self.max_attempts:
            self._give_up(row, f"gave up after {attempts} attempts: {error}", report)
            return
        delay = self.backoff(attempts, retry_after)
        with self.db.conn:
            mark_retry(self.db, row.id, self.clock(), delay, error)
        report.retried += 1
        log.warning(
            "notify: outbox row %d (alert %s) via %s failed, attempt %d, retry in %.1f s: %s",
            row.id,
            row.alert_id,
            row.channel,
            attempts,
            delay,
            error,
        )

    def _give_up(self, row: OutboxRow, error: str, report: RelayReport, *, count_attempt: bool = True) -> None:
        now = self.clock()
        target = self.fallback.get(row.channel) if row.fallback_of is None else None
        # One transaction: the alert is never left both given up on and not handed to the fallback.
        with self.db.conn:
            mark_failed(self.db, row.id, now, error, count_attempt=count_attempt)
            new_id = enqueue(self.db, row.message, target, now, fallback_of=row.id) if target else None
        report.failed += 1
        log.error("notify: outbox row %d (alert %s) via %s failed: %s", row.id, row.alert_id, row.channel, error)
        if new_id is not None:
            report.fell_back += 1
            log.warning("notify: outbox row %d (alert %s) handed to %s as row %d", row.id, row.alert_id, target, new_id)

    def _wake_event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        wake = self._wake_event()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        wake.clear()
