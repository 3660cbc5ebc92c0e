"""Maker's OSM next price: the value the oracle moves to, when, and the health it brings, for messages and documents.

A Maker vault's price reaches the Vat through an OSM that holds its next value for `hop` seconds: the adapter
already reads that value (details `next_price`, `next_price_at`, `next_health`) and counts the next health in the
position's health. This module says it in words and as the API's `next_oracle` object, and gives the alert rules
the health without it (`alerts.maker_next_price = false`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from watcher.alerts import classify
from watcher.model import WAD, Level, Position


@dataclass(frozen=True, slots=True)
class NextOracle:
    """The OSM's queued value for one vault and what it does to the vault."""

    price: int  #: the next value (WAD, USD per gem)
    at: int  #: zzz + hop: from this unix time anyone can OSM.poke it in
    health: int  #: the vault's health at that price (WAD)
    level: Level  #: the level that health falls in
    due: bool  #: `at` has passed at the block read: it can be poked in now
    stopped: bool  #: the OSM is stopped: the value waits until it is restarted


def next_level(health: int, warn: int, critical: int) -> Level:
    """The level a next health falls in; under 1 the vault is liquidatable once the value is poked in."""
    return Level.LIQUIDATABLE if health < WAD else classify(health, False, warn, critical)


def next_oracle(p: Position, warn: int, critical: int) -> NextOracle | None:
    """The OSM's next value for a Maker vault, None when there is none, it equals the current one, or no debt."""
    d = p.details
    price, at, health = d.get("next_price"), d.get("next_price_at"), d.get("next_health")
    if not d.get("osm") or price is None or at is None or health is None:
        return None
    if price == d.get("current_price"):
        return None  # the oracle does not move: saying so in every message would be noise
    return NextOracle(
        price=int(price),
        at=int(at),
        health=int(health),
        level=next_level(int(health), warn, critical),
        due=int(at) <= p.block.timestamp,
        stopped=bool(d.get("osm_stopped")),
    )


def _price_text(p: Position, price: int) -> str:
    from watcher.render import short  # render shows documents with this module: imported here, not at the top

    sym = "$" if p.base_currency == "USD" else ""
    return f"{sym}{short(price, len(str(p.base_unit)) - 1, 2)}"


def _when(n: NextOracle) -> str:
    if n.stopped:
        return " once the stopped OSM is restarted"
    if n.due:
        return ": can be poked in now"
    return f" at {time.strftime('%H:%M', time.gmtime(n.at))} UTC"


def next_oracle_line(p: Position, warn: int, critical: int) -> str | None:
    """'Maker's oracle moves to $1,812 at 14:00 UTC: health will be 1.0400: critical', or None."""
    from watcher.render import health_text

    n = next_oracle(p, warn, critical)
    if n is None:
        return None
    line = f"Maker's oracle moves to {_price_text(p, n.price)}{_when(n)}"
    line += f"{',' if n.due and not n.stopped else ':'} health will be {health_text(n.health)}"
    if n.level is not Level.OK:
        line += f": {n.level.word}"
    now = vat_health(p)
    if p.details.get("health_source") == "next" and now is not None:
        line += f" (until then {health_text(now)})"
    return line


def next_oracle_cell(p: Position, warn: int, critical: int) -> str | None:
    """The same on two short lines for a table cell: 'OSM next $1,812 at 14:00 UTC' and '→ 1.0400 critical'."""
    from watcher.render import health_text

    n = next_oracle(p, warn, critical)
    if n is None:
        return None
    when = "(stopped)" if n.stopped else "now" if n.due else f"at {time.strftime('%H:%M', time.gmtime(n.at))} UTC"
    return f"OSM next {_price_text(p, n.price)} {when}\n→ {health_text(n.health)} {n.level.word}"


def next_oracle_doc(p: Position, warn: int, critical: int) -> dict[str, Any] | None:
    """The API's `next_oracle` object: raw integers beside decimal strings, the level, and the line a message shows."""
    from watcher.render import units

    n = next_oracle(p, warn, critical)
    if n is None:
        return None
    return {
        "price_raw": n.price,
        "price": units(n.price, 18),
        "at": n.at,
        "at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(n.at)),
        "due": n.due,
        "stopped": n.stopped,
        "health_raw": n.health,
        "health": units(n.health, 18),
        "level": n.level.word,
        "text": next_oracle_line(p, warn, critical),
    }


def vat_health(p: Position) -> int | None:
    """The worst health a keeper can reach now, leaving out the OSM's queued value (the position's health when it
    is not a Maker vault)."""
    sim = p.simulator
    healths = getattr(sim, "healths", None)
    if type(sim).__name__ != "MakerSimulator" or healths is None:
        return p.health
    now = [h for name, h in healths().items() if name != "next" and h is not None]
    return min(now) if now else None


def alert_health(p: Position, use_next: bool) -> int | None:
    """The health the alert rules judge: the position's (next price included) or, with use_next off, the Vat's."""
    return p.health if use_next or p.details.get("health_source") != "next" else vat_health(p)
