"""Quiet hours: a daily period per channel in which alerts other than liquidatable and degraded wait."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from watcher.config.delivery import URGENT, parse_quiet_hours
from watcher.config.models import NotifyConfig
from watcher.store.outbox import SEVERITY, OutboxRow

#: Outbox ranks never held: liquidatable, and degraded (the watcher cannot see the positions).
URGENT_RANKS = frozenset(SEVERITY[level] for level in URGENT)


class QuietHours:
    """A daily period in a time zone, e.g. 22:00-07:00 Europe/Berlin; a start after the end spans midnight."""

    def __init__(self, period: str, tz: str = "UTC") -> None:
        self.period = period
        self.start, self.end = parse_quiet_hours(period)
        self.tz = ZoneInfo(tz)

    def __repr__(self) -> str:
        return f"QuietHours({self.period!r}, {self.tz.key!r})"

    def until(self, now: float) -> float | None:
        """The unix time the quiet period holding `now` ends, or None if `now` is not in one."""
        local = datetime.fromtimestamp(now, self.tz)
        t = local.time().replace(tzinfo=None)
        spans_midnight = self.start > self.end
        inside = (t >= self.start or t < self.end) if spans_midnight else self.start <= t < self.end
        if not inside:
            return None
        day = local.date()
        if spans_midnight and t >= self.start:
            day += timedelta(days=1)
        # Built as a wall time in the zone: on a DST change night the period still ends at the written hour.
        end = datetime(day.year, day.month, day.day, self.end.hour, self.end.minute, tzinfo=self.tz)
        return end.timestamp()


class QuietHold:
    """The relay's hold: per channel, until when a position's pending rows wait (None: not held)."""

    def __init__(self, quiet: Mapping[str, QuietHours]) -> None:
        self.quiet = dict(quiet)

    def __call__(self, channel: str, rows: Sequence[OutboxRow], now: float) -> float | None:
        """When `rows` (one position's pending rows on `channel`) may go, if quiet hours hold them now."""
        period = self.quiet.get(channel)
        if period is None:
            return None
        # One position's rows never overtake each other: if any is urgent, the whole queue goes, in order.
        if any(r.severity in URGENT_RANKS for r in rows):
            return None
        return period.until(now)


def quiet_hold(notify: NotifyConfig, channels: Sequence[str]) -> QuietHold | None:
    """The relay's hold for the channels with quiet_hours, or None when none has them."""
    from watcher.notify.routing import tables

    quiet = {n: QuietHours(t.quiet_hours, t.quiet_tz) for n, t in tables(notify).items() if t.quiet_hours}
    return QuietHold({n: q for n, q in quiet.items() if n in channels}) if quiet else None
