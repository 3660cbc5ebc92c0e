"""Telegram's /simulate: the what-if engine (watcher/whatif.py) over the daemon's latest committed positions."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from watcher.engine.live import LivePositions
from watcher.model import Level, Position
from watcher.render import action_text, health_text
from watcher.whatif import Outcome, Shock, ShockError, simulate

MAX_LINES = 20  #: a chat answer, not a report: `watcher simulate` prints every position


def simulate_with(live: LivePositions) -> Callable[[dict[str, Fraction]], str]:
    """The /simulate answer over `live`: each affected position's health before and after, and the fix after."""

    def answer(shocks: dict[str, Fraction]) -> str:
        positions = list(live.positions.values())
        if not positions:
            return "No position has been read yet: try again after the first check."
        asked = [Shock(symbol, round(change * 10_000)) for symbol, change in shocks.items()]
        # people say ETH and BTC for the asset: a perp venue's ETH and a lending protocol's WETH are both meant
        wanted: list[Shock] = []
        for s in asked:
            named = [s] if s.is_address else [s, Shock("W" + s.target, s.bps)]
            refusals = [_refusal(positions, v, live) for v in named]
            if all(refusals):
                return f"/simulate: {refusals[0]}"
            wanted += [v for v, why in zip(named, refusals, strict=True) if not why]
        try:
            outcomes = simulate(positions, wanted, None, live.thresholds)
        except ShockError as exc:  # each shock names something alone; together they may still clash
            return f"/simulate: {exc}"
        return _text(wanted, outcomes)

    return answer


def _refusal(positions: list[Position], shock: Shock, live: LivePositions) -> str:
    """Why the what-if engine refuses this one shock ("" when some position holds what it names)."""
    try:
        simulate(positions, [shock], None, live.thresholds)
    except ShockError as exc:
        return str(exc)
    return ""


def _text(shocks: list[Shock], outcomes: list[Outcome]) -> str:
    head = "What if " + ", ".join(str(s) for s in shocks) + " (exact, on each protocol's own check):"
    hit = [o for o in outcomes if o.status == "shocked"]
    hit.sort(key=lambda o: (o.health_after is None, o.health_after or 0))
    lines = [head]
    for o in hit[:MAX_LINES]:
        p = o.position
        after = "no debt" if o.health_after is None else health_text(o.health_after)
        before = "no debt" if o.health_before is None else health_text(o.health_before)
        line = f"{p.label} {p.protocol}/{p.chain}: {before} -> {after} {o.level_after.word}"
        fix = _fix(o)
        lines.append(line + (f"; {fix}" if fix else ""))
    if len(hit) > MAX_LINES:
        lines.append(f"... and {len(hit) - MAX_LINES} more (watcher simulate shows all)")
    others = [o for o in outcomes if o.status == "not shockable"]
    if not hit:
        lines.append("No position holds these assets.")
    if others:
        lines.append(f"{len(others)} position(s) cannot be shocked: " + "; ".join(others[0].notes)[:200])
    return "\n".join(lines)


def _fix(o: Outcome) -> str:
    adv = o.advice_after
    if adv is None or o.level_after == Level.OK:
        return ""
    feasible = [a for a in (*adv.top_ups, *adv.repayments) if a.feasible]
    return f"{action_text(feasible[0])} restores the target" if feasible else ""


__all__ = ["simulate_with"]
