"""The relay: drains the outbox through the channels, in order, never giving up on a live alert.

Per channel, rows go worst level first, then oldest first, and one position's rows never overtake each other. A
failed send (a TemporaryFailure or anything unexpected) rests the whole channel, capped-exponentially, and the row
stays first in line: a dead service is asked once per backoff step, not once per queued row, and nothing is lost
however long the outage. Rows of one position that waited through a failure are folded: only the newest is sent,
with a line saying how many were folded. A row that fails `fallback_after` times, or any row behind a channel that
has, is copied once to the fallback channel while the original keeps retrying. Only a PermanentFailure gives a row up.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from watcher.notify.base import Channel, Message, PermanentFailure, TemporaryFailure, log
from watcher.notify.relay_state import _ChannelState, _Plan, fold_note
from watcher.store import outbox
from watcher.store.outbox import OutboxRow, mark_delivered, mark_superseded


@dataclass
class RelayReport:
    """What one pass of the relay did: rows delivered, retried later, given up, copied to a fallback, folded."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    fell_back: int = 0
    superseded: int = 0


class Relay:
    """Delivers outbox rows at least once: a row is marked delivered only after its channel accepted it."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        channels: dict[str, Channel],
        *,
        fallback: dict[str, str] | None = None,
        retry_initial: float = 2.0,
        retry_max: float = 300.0,
        fallback_after: int = 8,
        clock: Callable[[], float] = time.time,
        hold: Callable[[str, list[OutboxRow], float], float | None] | None = None,
    ) -> None:
        fallback = dict(fallback or {})
        for source, target in fallback.items():
            if target == source:
                raise ValueError(f"notify: channel {source!r} cannot be its own fallback")
            if target not in channels:
                raise ValueError(f"notify: the fallback of {source!r} is {target!r}, which is not a configured channel")
        if not retry_initial > 0 or not retry_max >= retry_initial:
            raise ValueError("notify: retry_initial must be positive and retry_max at least retry_initial")
        if fallback_after < 1:
            raise ValueError("notify: fallback_after must be at least 1")
        # The relay commits on this connection after every row: give it a Database of its own, or never keep a
        # transaction open across an await on a shared one (the relay's commit would end it half done).
        self.db = db
        self.channels = dict(channels)
        self.fallback = fallback
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.fallback_after = fallback_after
        self.clock = clock
        #: until when a position's rows on a channel wait without an attempt (quiet hours, watcher/notify/quiet.py)
        self.hold = hold
        self._state: dict[str, _ChannelState] = {}
        #: per channel, what `/health` shows of it: ok, consecutive failures, the last error, since when
        self.health: dict[str, dict[str, object]] = {
            name: {"ok": True, "failures": 0, "last_error": "", "since": None} for name in self.channels
        }
        #: called with the error text when the relay cannot write the outbox, and with None once it can again
        self.on_storage: Callable[[str | None], None] = lambda _error: None
        self._storage_bad = False
        self._wakes: dict[str, asyncio.Event] = {}
        self._stop: asyncio.Event | None = None
        self._copied_to: set[str] = set()  #: channels that got fallback copies during this round of run_once

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds a channel rests after its `failures`-th failure in a row: doubling, capped, never less than asked."""
        exponential = min(self.retry_max, self.retry_initial * 2 ** min(failures - 1, 64))
        return max(retry_after or 0.0, exponential)

    async def run_once(self) -> RelayReport:
        """Drain every channel once (side by side, each in its own order) and report what happened."""
        report = RelayReport()
        names = {row.channel for row in outbox.pending(self.db)}
        # Two rounds at most: the second drains the copies a failing channel handed to its fallback in the first.
        for _ in range(2):
            self._copied_to = set()
            # A slow channel (Telegram's pacing, an SMTP timeout) must not hold up the others' alerts.
            async with asyncio.TaskGroup() as group:
                for name in sorted(names):
                    group.create_task(self._drain(name, report))
            names = self._copied_to
            if not names:
                break
        return report

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Drain each channel in a loop of its own until `stop` is set: a channel that is slow (Telegram's pacing, an
        SMTP server that hangs until its timeout) or has a backlog never delays another channel's new alert."""
        self._stop = stop
        try:
            orphans = {row.channel for row in outbox.pending(self.db)} - set(self.channels)
        except sqlite3.Error:
            orphans = set()
        if orphans:  # rows of a channel no longer configured: given up once, saying so
            report = RelayReport()
            for name in sorted(orphans):
                await self._drain(name, report)
        await asyncio.gather(*(self._channel_loop(name, stop, interval) for name in sorted(self.channels)))

    async def _channel_loop(self, name: str, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            pause = interval
            try:
                await self._drain(name, RelayReport())
                next_at = None if self._channel(name).unrecorded else self._next_due(name)
                if next_at is not None:
                    pause = min(interval, max(0.0, next_at - self.clock()))
            except Exception as exc:
                # Channel errors never get here; this is the database (locked, disk full). Keep going: the rows are
                # still in it, and the next pass may succeed.
                log.error("notify: %s: relay pass failed: %s: %s", name, type(exc).__name__, exc)
                self._storage_bad = True
                self.on_storage(f"{type(exc).__name__}: {exc}")
            await self._pause_channel(name, stop, pause)

    def _next_due(self, name: str) -> float | None:
        plans = self._plans(name)
        if not plans:
            return None
        return max(min(at for _, at, _ in plans), self._channel(name).rest_until)

    def wake(self) -> None:
        """Start the next pass of every channel now (call it after committing new outbox rows)."""
        # Made here if need be: a wake while a channel's first send is in flight must not be lost.
        for name in self.channels:
            self._wake_for(name).set()

    def _wake_for(self, name: str) -> asyncio.Event:
        return self._wakes.setdefault(name, asyncio.Event())

    async def _pause_channel(self, name: str, stop: asyncio.Event, seconds: float) -> None:
        wake = self._wake_for(name)
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        wake.clear()

    def next_due_at(self) -> float | None:
        """When the relay next has something to try: the earliest due send of a channel not resting, or None."""
        times = [
            t for name in {row.channel for row in outbox.pending(self.db)} if (t := self._next_due(name)) is not None
        ]
        return min(times) if times else None

    # --- one channel

    async def _drain(self, name: str, report: RelayReport) -> None:
        channel = self.channels.get(name)
        state = self._channel(name)
        if channel is None:
            for row in outbox.pending(self.db, name):
                self._give_up((row,), f"no channel named {name!r} is configured", report, count_attempt=False)
            return
        if state.unrecorded and not self._record(name, state):
            return  # nothing more is sent on this channel until what it already sent is written down
        # Alerts that arrived while the channel is known dead go to the fallback now, not after its next failure.
        self._copy_to_fallback(name, report)
        while self._stop is None or not self._stop.is_set():
            if self.clock() < state.rest_until:
                return
            plan = self._next(name)
            if plan is None:
                return
            if not await self._deliver(channel, plan, report):
                return

    def _next(self, name: str) -> _Plan | None:
        """The channel's next send: of the due positions, the worst (then the oldest); folded if it waited."""
        now = self.clock()
        due = [(key, plan) for key, at, plan in self._plans(name) if at <= now]
        return min(due, key=lambda item: item[0])[1] if due else None

    def _plans(self, name: str) -> list[tuple[tuple[int, float, int], float, _Plan]]:
        """Per position pending on the channel: its sending-order key, when its next send is due, and that send."""
        state = self._channel(name)
        by_position: dict[str, list[OutboxRow]] = {}
        for row in outbox.pending(self.db, name):
            by_position.setdefault(row.position, []).append(row)
        plans = []
        for rows in by_position.values():
            # Only rows that waited through a failure are folded: with no outage every update is sent.
            waited = [r for r in rows[:-1] if state.failures or r.attempts > 0 or r.created_at <= state.outage_end]
            plan = _Plan(rows[-1], tuple(rows[:-1])) if waited else _Plan(rows[0], ())
            due_at = plan.row.next_attempt_at if plan.row.next_attempt_at is not None else plan.row.created_at
            if self.hold is not None and (until := self.hold(name, rows, self.clock())) is not None:
                due_at = max(due_at, until)
            # A position's worst row decides its place, so a mild update never holds a worse one of its position back.
            plans.append(((-max(r.severity for r in rows), rows[0].created_at, rows[0].id), due_at, plan))
        return plans

    async def _deliver(self, channel: Channel, plan: _Plan, report: RelayReport) -> bool:
        """Try one send; True if the channel may go on to its next row."""
        row = plan.row
        message = row.message
        if plan.folded:
            message = Message(row.alert_id, row.subject, row.text, note=fold_note(plan.folded))
        try:
            await channel.send(message)
        except TemporaryFailure as exc:
            self._retry(row, str(exc), exc.retry_after, report)
            return False
        except PermanentFailure as exc:
            # Given up on this channel with the rows it folds, so the fallback gets the whole story, oldest first.
            self._unhealthy(row.channel, str(exc), permanent=True)
            self._give_up((*plan.folded, row), str(exc), report)
            return True
        except Exception as exc:
            # A channel bug must not stop the relay, nor lose the alert. Its text is left out: only our own failures
            # are known to be free of secrets.
            self._retry(row, f"{row.channel}: unexpected {type(exc).__name__}", None, report)
            return False
        # Committed at once: a crash before this line means the row is sent again after a restart (at least once,
        # never lost), and committing now keeps that window to this one message. The folded rows go in the same
        # transaction, so they are never both marked superseded and not covered by a delivery.
        state = self._channel(row.channel)
        state.unrecorded.append((row.id, tuple(r.id for r in plan.folded), self.clock()))
        if not self._record(row.channel, state):
            return False
        self._healthy(row.channel)
        if state.failures:
            state.outage_end = self.clock()
        state.failures, state.rest_until = 0, float("-inf")
        report.delivered += 1
        report.superseded += len(plan.folded)
        log.info(
            "notify: delivered outbox row %d (alert %s) via %s%s",
            row.id,
            row.alert_id,
            row.channel,
            f", folding {len(plan.folded)} earlier" if plan.folded else "",
        )
        return True

    def _record(self, name: str, state: _ChannelState) -> bool:
        """Write the marks of deliveries already made; False (and the channel waits) if the database refuses."""
        try:
            with outbox.transaction(self.db):
                for row_id, folded, at in state.unrecorded:
                    mark_delivered(self.db, row_id, at)
                    mark_superseded(self.db, folded, row_id)
        except sqlite3.Error as exc:
            log.error(
                "notify: %s: %d delivered row(s) not yet marked, held until the database takes writes: %s: %s",
                name,
                len(state.unrecorded),
                type(exc).__name__,
                exc,
            )
            self._storage_bad = True
            self.on_storage(f"{type(exc).__name__}: {exc}")
            return False
        state.unrecorded.clear()
        if self._storage_bad:
            self._storage_bad = False
            self.on_storage(None)
        return True

    def _healthy(self, name: str) -> None:
        if name in self.health:
            self.health[name] = {"ok": True, "failures": 0, "last_error": "", "since": None}

    def _unhealthy(self, name: str, error: str, *, permanent: bool) -> None:
        if name not in self.health:
            return
        was = self.health[name]
        since = was["since"] if not was["ok"] else self.clock()
        failures = int(was["failures"]) + 1  # type: ignore[call-overload]
        self.health[name] = {
            "ok": False,
            "failures": failures,
            "last_error": error,
            "since": since,
            "gave_up": permanent or bool(was.get("gave_up")),
        }

    def _retry(self, row: OutboxRow, error: str, retry_after: float | None, report: RelayReport) -> None:
        state = self._channel(row.channel)
        now = self.clock()
        self._unhealthy(row.channel, error, permanent=False)
        state.failures += 1
        delay = self.backoff(state.failures, retry_after)
        state.rest_until, state.outage_end = now + delay, now
        # The rows behind it are not tried while the channel rests; the API should still say why they wait.
        outbox.record_retry(self.db, row, now, delay, error)
        report.retried += 1
        log.warning(
            "notify: outbox row %d (alert %s) via %s failed (attempt %d, channel failure %d), next try in %.1f s: %s",
            row.id,
            row.alert_id,
            row.channel,
            row.attempts + 1,
            state.failures,
            delay,
            error,
        )
        self._copy_to_fallback(row.channel, report)

    def _copy_to_fallback(self, name: str, report: RelayReport) -> None:
        """Copy, once each, the rows that failed fallback_after times, or all rows if the channel has."""
        target = self.fallback.get(name)
        if target is None:
            return
        dead = self._channel(name).failures >= self.fallback_after
        for row in outbox.pending(self.db, name):
            if row.fallback_of is not None or not (dead or row.attempts >= self.fallback_after):
                continue
            if outbox.has_copy(self.db, row, target):
                continue
            new_id = outbox.add_fallback_copy(self.db, row, target)
            report.fell_back += 1
            self._copied_to.add(target)
            self._wake_for(target).set()
            log.warning(
                "notify: outbox row %d (alert %s) still waiting on %s after %d failures; copy sent via %s as row %d",
                row.id,
                row.alert_id,
                name,
                self._channel(name).failures,
                target,
                new_id,
            )

    def _give_up(
        self, rows: tuple[OutboxRow, ...], error: str, report: RelayReport, *, count_attempt: bool = True
    ) -> None:
        now = self.clock()
        sent = rows[-1]
        # One transaction: the alert is never left both given up on and not handed to the fallback.
        copies = outbox.give_up(
            self.db,
            rows,
            now,
            error,
            lambda row: self.fallback.get(row.channel) if row.fallback_of is None else None,
            count_attempt=sent if count_attempt else None,
        )
        for row in rows:
            report.failed += 1
            log.error("notify: outbox row %d (alert %s) via %s failed: %s", row.id, row.alert_id, row.channel, error)
        for row, new_id in copies:
            report.fell_back += 1
            target = self.fallback[row.channel]
            self._wake_for(target).set()  # the target's own loop sends the copy now
            log.warning("notify: outbox row %d (alert %s) handed to %s as row %d", row.id, row.alert_id, target, new_id)

    def _channel(self, name: str) -> _ChannelState:
        state = self._state.setdefault(name, _ChannelState())
        if not state.loaded:
            state.loaded = True
            # After a restart: a channel whose rows show failed attempts is still failing until it delivers.
            failed = [r for r in outbox.pending(self.db, name) if r.attempts > 0]
            if failed:
                state.failures = max(r.attempts for r in failed)
                state.rest_until = max(r.next_attempt_at or r.created_at for r in failed)
                state.outage_end = self.clock()
        return state
