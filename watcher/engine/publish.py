"""Publishing one check: listeners stage their changes, the store commits them at once, then memory follows."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from watcher.alerts import AlertState, Event
from watcher.check import CheckResult
from watcher.model import Position
from watcher.risk import Advice, advise
from watcher.store import AlertRecord, HistoryRow, Store
from watcher.store.core import Route

log = logging.getLogger("watcher")


@dataclass
class Staged:
    """What one check would write, built by the listeners before anything is committed."""

    now: float
    states: dict[str, AlertState] = field(default_factory=dict)
    alerts: list[AlertRecord] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    muted: set[str] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)


@dataclass
class Check:
    """One source's check result as the listeners see it: the result, its time, and what listeners learn of it."""

    source: str
    result: CheckResult
    now: float
    target: int  #: the health the advice restores
    events: dict[str, list[Event]] = field(default_factory=dict)  #: per position key, filled by the alerting listener
    _advice: dict[str, Advice | None] = field(default_factory=dict)

    def advice(self, p: Position) -> Advice | None:
        """The top-up or repayment restoring the target, computed once per check for whoever asks first."""
        if not p.has_debt:
            return None
        if p.key not in self._advice:
            try:
                self._advice[p.key] = advise(p, self.target)
            except Exception:  # advice is a convenience: its failure must not cost the alert or the commit
                log.exception("advice failed", extra={"position": p.key})
                self._advice[p.key] = None
        return self._advice[p.key]

    def advised(self, key: str) -> bool:
        """Whether advice was computed for the position in this check."""
        return key in self._advice


class Listener(Protocol):
    """A part of the daemon that follows check results: it stages changes, then applies them once committed."""

    def stage(self, check: Check, staged: Staged) -> None:
        """Add what this check changes to `staged` (pure: nothing in memory changes yet)."""

    def applied(self, staged: Staged) -> None:
        """The commit succeeded: make memory follow it."""


class Publisher:
    """Turns each check result into one transaction through its listeners; memory changes only after the commit."""

    def __init__(
        self,
        store: Store,
        listeners: Sequence[Listener],
        channels: Sequence[str],
        target: int,
        clock: Callable[[], float],
        on_alerts: Callable[[], None],
        route: Route | None = None,
    ) -> None:
        self.store = store
        self.listeners = list(listeners)
        self.channels = list(channels)
        self.target = target
        self.clock = clock
        self.on_alerts = on_alerts
        self.route = route  #: which channels get each alert (watcher/notify/routing.py); None: all of them
        self.checks = 0  #: checks committed
        self.commit_failures = 0
        #: the database's own health, shown by the API beside the stored state
        self.storage: dict[str, Any] = {"ok": True, "error": "", "since": clock()}

    def storage_report(self, error: str | None, now: float | None = None) -> None:
        """A writer's word on the database (a commit's, or the relay's): an error it could not write past, or None.

        The dict is updated in place: the API holds it and shows each change as it happens.
        """
        if (error is None) != self.storage["ok"]:
            since = self.clock() if now is None else now
            self.storage.update(ok=error is None, error=error or "", since=since)

    def publish(self, source: str, result: CheckResult) -> bool:
        """Stage, commit and apply one check; whether the commit succeeded.

        A failed commit (a locked, full or read-only database) leaves memory as it was, so the next check raises the
        same transitions again and no degraded, recovered or level alert is lost or orphaned.
        """
        now = self.clock()
        check = Check(source, result, now, self.target)
        staged = Staged(now)
        for listener in self.listeners:
            listener.stage(check, staged)
        try:
            self.store.commit(
                now=now,
                states=staged.states,
                alerts=staged.alerts,
                channels=self.channels,
                history=staged.history,
                chain_status=staged.status,
                positions=staged.positions,
                muted=staged.muted,
                unknown=staged.unknown,
                route=self.route,
            )
        except (sqlite3.Error, OSError) as exc:
            self.commit_failures += 1
            self.storage_report(f"{type(exc).__name__}: {exc}", now)
            log.error(
                "commit failed: nothing changed, the check's transitions come again at the next one",
                extra={"chain": source, "error": f"{type(exc).__name__}: {exc}", "alerts": len(staged.alerts)},
            )
            return False
        if not self.storage["ok"]:
            log.info("storage writable again", extra={"chain": source})
            self.storage_report(None, now)
        for listener in self.listeners:
            listener.applied(staged)
        self.checks += 1
        if staged.alerts:
            self.on_alerts()
        log.info(
            "check",
            extra={
                "chain": source,
                "positions": len(result.positions),
                "unknown": sum(len(u.accounts) for u in result.unreadable),
                "alerts": len(staged.alerts),
                "block": result.blocks[source].number if source in result.blocks else None,
                "seconds": round(result.seconds, 4),
            },
        )
        return True
