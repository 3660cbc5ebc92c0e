"""Which channels an alert goes to (each channel's `levels`), and the fallback map of the configured channels.

A recovery (a position back to ok, a chain read again) goes to every channel that has a row of the alert episode it
ends, so whoever heard "critical" hears "recovered". A fallback copy ignores the target's levels: a message that
reached nobody is worse than one on a channel the user reserved for something else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlite_utils

from watcher.config.delivery import Delivery, apprise_names
from watcher.config.models import NotifyConfig
from watcher.store.outbox import TABLE
from watcher.store.records import AlertRecord

RECOVERIES = ("recover", "recovered")


def route_of(kind: str, level: str) -> str | None:
    """The name a channel's `levels` lists this alert under, or None for a recovery."""
    if kind in RECOVERIES:
        return None
    if kind in ("degraded", "falling_fast"):
        return kind
    return level


class Routing:
    """Per channel, the levels it receives (None: everything); called by the store inside the check's commit."""

    def __init__(self, levels: Mapping[str, Sequence[str] | None]) -> None:
        self.levels = {name: None if lv is None else frozenset(lv) for name, lv in levels.items()}

    def __call__(self, db: sqlite_utils.Database, alert: AlertRecord, channels: Sequence[str]) -> list[str]:
        """The channels among `channels` that get `alert`."""
        route = route_of(alert.kind, alert.level)
        if route is not None:
            return [c for c in channels if (lv := self.levels.get(c)) is None or route in lv]
        # The recovery's id is its episode's prefix and "recovered" (watcher.alerts.alert_id).
        prefix = alert.id.rpartition(":")[0] + ":"
        rows = db.conn.execute(
            f"SELECT DISTINCT channel FROM {TABLE} WHERE position = ? AND substr(alert_id, 1, ?) = ?",
            (alert.position, len(prefix), prefix),
        ).fetchall()
        had = {r[0] for r in rows}
        return [c for c in channels if self.levels.get(c) is None or c in had]


def tables(notify: NotifyConfig) -> dict[str, Delivery]:
    """Each configured channel's table in [notify], by channel name."""
    out: dict[str, Delivery] = {}
    if notify.telegram is not None:
        out["telegram"] = notify.telegram
    if notify.email is not None:
        out["email"] = notify.email
    out |= dict(zip(apprise_names(notify.apprise), notify.apprise, strict=True))
    return out


def fallback_map(notify: NotifyConfig, channels: Sequence[str]) -> dict[str, str]:
    """Each channel's fallback: its `fallback` key, else telegram and email for each other when both are there."""
    out: dict[str, str] = {}
    if "telegram" in channels and "email" in channels:
        out = {"telegram": "email", "email": "telegram"}
    for name, table in tables(notify).items():
        if name in channels and table.fallback in channels:
            out[name] = table.fallback
    return out


def routing(notify: NotifyConfig, channels: Sequence[str]) -> Routing | None:
    """The routing of these channels, or None when every channel receives everything (the store's default)."""
    found = tables(notify)
    levels = {c: found[c].levels if c in found else None for c in channels}
    return Routing(levels) if any(lv is not None for lv in levels.values()) else None
