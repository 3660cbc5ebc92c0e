"""The price ladder of a position document: health at -5 %, -10 %, ... of its main collateral's price, to liquidation.

Computed on the position's exact simulator when the document is rebuilt, never per request, and refreshed with the
advice (every check for a position at warn or worse, every `storage.history_every` otherwise): `Ladders` keeps the
last one. Lending positions with debt get one on the main collateral, the leg of largest value that an oracle
prices; the rungs stop at the first liquidatable one, the exact boundary is the document's `liquidation_prices`. A
perp account gets one where its simulator names a market to move (`ladder_market`: Hyperliquid's largest position,
down for a long and up for a short; it is rebuilt every check, as a perp has no advice to follow); other perps carry
a liquidation price per market instead.
"""

from __future__ import annotations

import logging
from typing import Any

from watcher.model import BPS, Leg, Position, Simulator
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


def _rungs(sim: Simulator, asset: str, start: int, sign: int, step_bps: int, max_rungs: int) -> list[dict[str, Any]]:
    """Health at each step of `asset`'s price (down for sign -1, up for +1), to the first liquidatable rung."""
    rungs = []
    for k in range(1, max_rungs + 1):
        bps = sign * step_bps * k
        price = start * (BPS + bps) // BPS
        shocked = sim.with_price(asset, price)
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
    return rungs


def price_ladder(p: Position, step_bps: int = STEP_BPS, max_rungs: int = MAX_RUNGS) -> dict[str, Any] | None:
    """Health at each step down of the main collateral's price, stopping at the first liquidatable rung."""
    if p.perps:
        return perp_ladder(p, step_bps, max_rungs)
    if not p.has_debt or p.liquidatable:
        return None
    leg = main_collateral(p)
    sim = p.simulator
    if leg is None or sim is None:
        return None
    rungs = _rungs(sim, leg.asset, leg.price, -1, step_bps, max_rungs)
    return {
        "asset": leg.asset,
        "symbol": leg.symbol,
        "price_raw": leg.price,
        "step_pct": step_bps // 100,
        "rungs": rungs,
    }


def perp_ladder(p: Position, step_bps: int = STEP_BPS, max_rungs: int = MAX_RUNGS) -> dict[str, Any] | None:
    """A perp account's ladder, where its simulator names a market (`ladder_market`): moves against the position."""
    pick = getattr(p.simulator, "ladder_market", None)
    found = pick() if callable(pick) and not p.liquidatable else None
    if found is None or p.simulator is None:
        return None
    symbol, start, sign = found
    rungs = _rungs(p.simulator, symbol, start, sign, step_bps, max_rungs)
    direction = "down" if sign < 0 else "up"
    return {
        "asset": symbol,
        "symbol": symbol,
        "price_raw": start,
        "step_pct": step_bps // 100,
        "direction": direction,
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
