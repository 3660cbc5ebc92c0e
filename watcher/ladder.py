"""The price ladder of a position document: health at -5 %, -10 %, ... of its main collateral's price, to liquidation.

Computed on the position's exact simulator when the document is rebuilt, never per request, and refreshed with the
advice (every check for a position at warn or worse, every `storage.history_every` otherwise): `Ladders` keeps the
last one. Only lending positions with debt get one: the main collateral is the leg of largest value that an oracle
prices; a perp's document already carries a liquidation price per market. The rungs stop at the first liquidatable
one; the exact boundary is the document's `liquidation_prices`.
"""

from __future__ import annotations

import logging
from typing import Any

from watcher.model import BPS, Leg, Position
from watcher.render import units
from watcher.whatif import verdict

log = logging.getLogger("watcher")

STEP_BPS = 500  #: rungs 5 % apart
MAX_RUNGS = 19  #: down to -95 %


def main_collateral(p: Position) -> Leg | None:
    """The collateral leg of largest value whose price the simulator moves; None if there is none."""
    sim = p.simulator
    if sim is None:
        return None
    for leg in sorted(p.collateral, key=lambda x: x.value, reverse=True):
        if leg.price <= 0 or leg.amount == 0:
            continue
        try:
            probe = sim.with_price(leg.asset, leg.price * 2 + 1)
        except (ValueError, KeyError):
            continue
        if probe is not sim and probe != sim:
            return leg
    return None


def price_ladder(p: Position, step_bps: int = STEP_BPS, max_rungs: int = MAX_RUNGS) -> dict[str, Any] | None:
    """Health at each step down of the main collateral's price, stopping at the first liquidatable rung."""
    if not p.has_debt or p.perps or p.liquidatable:
        return None
    leg = main_collateral(p)
    sim = p.simulator
    if leg is None or sim is None:
        return None
    rungs = []
    for k in range(1, max_rungs + 1):
        bps = -step_bps * k
        price = leg.price * (BPS + bps) // BPS
        shocked = sim.with_price(leg.asset, price)
        health, liq = shocked.health(), verdict(shocked)
        rungs.append(
            {
                "move_pct": bps // 100,
                "price_raw": price,
                "health_raw": health,
                "health": None if health is None else units(health, 18),
                "liquidatable": liq,
            }
        )
        if liq:
            break
    return {
        "asset": leg.asset,
        "symbol": leg.symbol,
        "price_raw": leg.price,
        "step_pct": step_bps // 100,
        "rungs": rungs,
    }


def ladder_json(p: Position) -> dict[str, Any] | None:
    """The ladder for a document; a failure costs the ladder only, never the document or the check."""
    try:
        return price_ladder(p)
    except Exception:  # the ladder is a convenience: its failure must not cost the position's document
        log.exception("price ladder failed", extra={"position": p.key})
        return None


class Ladders:
    """The last ladder per position: recomputed when its advice is, or when it has none yet."""

    def __init__(self) -> None:
        self.kept: dict[str, dict[str, Any] | None] = {}

    def for_document(self, p: Position, refresh: bool) -> dict[str, Any] | None:
        """The ladder to put in the position's document now."""
        if refresh or p.key not in self.kept:
            # A derived value, not state: keeping it before the commit is harmless (a failed commit only reuses it).
            self.kept[p.key] = ladder_json(p)
        return self.kept[p.key]
