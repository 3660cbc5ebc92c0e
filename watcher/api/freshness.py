"""Freshness: a dead or hung daemon must never read as healthy in the API."""

from __future__ import annotations

import json
import logging
from typing import Any

from watcher.api.base import _finite, _iso_of
from watcher.config import Config

log = logging.getLogger("watcher.api")


def _bounds(cfg: Config) -> dict[str, float]:
    """Seconds without a good read after which each watched chain and venue counts as degraded.

    Only chains the daemon reads (some account has a position to read there): a configured chain no account uses is
    never checked, and must not read as stale forever.
    """
    from watcher.check import build

    watched = {r.chain for r in build(cfg)}
    out = {name: chain.watchdog_after() for name, chain in cfg.chains.items() if name in watched}
    out.update({name: venue.watchdog_after() for name, venue in cfg.venues.items()})
    return out


def _stale_reason(age: float, bound: float) -> str:
    return f"no good read for {int(age)} s (stale_after {bound:g} s)"


def _freshness(settings: dict[str, Any], status: dict[str, dict[str, Any]], now: float) -> dict[str, tuple[float, str]]:
    """Per source whose last good read (else its first failure, else the API's start) is older than its bound:
    (the time before which a position's reading is too old, why)."""
    out = {}
    for name, bound in settings["bounds"].items():
        row = status.get(name)
        if row is None:
            ref = settings["started"]
        else:
            ref = _finite(row.get("last_ok"))
            if ref is None:
                ref = _finite(row.get("since"))
        # A good read "in the future" means the wall clock was stepped back since: its age is unknown, so stale.
        if ref is not None and (now - ref > bound or ref - now > bound):
            out[name] = (now - bound, _stale_reason(now - ref, bound))
    return out


def _stale_doc(text: str, chain: str, stale: dict[str, tuple[float, str]]) -> str:
    doc = json.loads(text)
    doc |= {"level": "unknown", "stale": True, "stale_reason": stale[chain][1]}
    return json.dumps(doc)


def _storage(live: dict[str, Any] | None) -> dict[str, Any] | None:
    """The daemon's own report on its database writes, when it runs in this process."""
    if live is None:
        return None
    s = live.get("storage")
    s = s if isinstance(s, dict) else {}
    since = _finite(s.get("since"))
    return {
        "ok": s.get("ok", True) is not False,
        "error": str(s.get("error") or ""),
        "since": since,
        "since_iso": _iso_of(since),
    }
