"""The config of delivery per channel: apprise URLs, the levels each channel receives, its quiet hours, its fallback."""

from __future__ import annotations

import re
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from watcher.config.values import MAX_TIMEOUT, Name, SecretRef, Strict

#: What a channel may receive, by the alerts' own names: the three position levels, a chain or venue that cannot be
#: read, and a fast fall in health. Recoveries are not listed: a channel gets the recovery of what it got.
LEVELS = ("warn", "critical", "liquidatable", "degraded", "falling_fast")
#: Never held back by quiet hours.
URGENT = ("liquidatable", "degraded")
#: Names the built-in channels have.
BUILT_IN = ("telegram", "email")

_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_quiet_hours(text: str) -> tuple[time, time]:
    """ "22:00-07:00" as (start, end); ValueError says what is wrong with it."""
    parts = text.split("-")
    matches = [_CLOCK.fullmatch(p.strip()) for p in parts] if len(parts) == 2 else []
    if len(matches) != 2 or not all(matches):
        raise ValueError(f'{text!r} is not a quiet period: write it as HH:MM-HH:MM, e.g. "22:00-07:00"')
    start, end = (time(int(m.group(1)), int(m.group(2))) for m in matches if m)
    if start == end:
        raise ValueError(f"{text!r} starts and ends at the same minute: give a period")
    return start, end


class Delivery(Strict):
    """What every channel's table may add: the levels it receives, quiet hours, and where it falls back to."""

    #: the alerts this channel receives (see LEVELS); None: all of them
    levels: list[str] | None = None
    #: "HH:MM-HH:MM" in quiet_tz: alerts other than liquidatable and degraded wait until it ends
    quiet_hours: str | None = None
    quiet_tz: str = "UTC"
    #: the channel that gets a copy of what this one cannot deliver; the built-in pair fall back to each other
    fallback: str | None = None

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError(f"is empty: list the alerts this channel receives ({', '.join(LEVELS)}), or leave it out")
        for level in v:
            if level not in LEVELS:
                raise ValueError(f"{level!r} is not a level: use {', '.join(LEVELS)}")
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, v: str | None) -> str | None:
        if v is not None:
            parse_quiet_hours(v)
        return v

    @field_validator("quiet_tz")
    @classmethod
    def _quiet_tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'{v!r} is not a time zone (an IANA name such as "Europe/Berlin", or "UTC")') from None
        return v


class AppriseConfig(Delivery):
    """One channel through apprise: a URL from the environment or a file (it carries the service's token)."""

    name: Name | None = None  #: the channel's name in /health and /alerts; default apprise:1, apprise:2 ...
    url: SecretRef
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  #: seconds for one whole send


def apprise_names(entries: list[AppriseConfig]) -> list[str]:
    """Each apprise entry's channel name, in order."""
    return [e.name or f"apprise:{i + 1}" for i, e in enumerate(entries)]


def check_channels(notify: Any) -> None:
    """Raise ValueError naming the key: a duplicate or reserved channel name, or a fallback no channel has."""
    entries: list[tuple[str, str, Delivery]] = []
    if notify.telegram is not None:
        entries.append(("notify.telegram", "telegram", notify.telegram))
    if notify.email is not None:
        entries.append(("notify.email", "email", notify.email))
    seen = {name for _, name, _ in entries}
    for i, (entry, name) in enumerate(zip(notify.apprise, apprise_names(notify.apprise), strict=True)):
        if entry.name in BUILT_IN:
            raise ValueError(f"notify.apprise[{i}].name: {entry.name!r} is a built-in channel's name; give another")
        if name in seen:
            raise ValueError(f"notify.apprise[{i}].name: {name!r} names two channels")
        seen.add(name)
        entries.append((f"notify.apprise[{i}]", name, entry))
    for where, name, entry in entries:
        if entry.fallback is None:
            continue
        if entry.fallback == name:
            raise ValueError(f"{where}.fallback: a channel cannot be its own fallback")
        if entry.fallback not in seen:
            raise ValueError(
                f"{where}.fallback: {entry.fallback!r} is not a configured channel ({', '.join(sorted(seen))})"
            )
