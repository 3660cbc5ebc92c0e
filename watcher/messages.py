"""Alert messages short enough for a phone: who, where, health and trend, what liquidates, what fixes it."""

from __future__ import annotations

import time
from decimal import Decimal

from watcher.alerts import Event
from watcher.forecast_doc import CACHE, forecast_line
from watcher.model import Level, Position
from watcher.next_oracle import next_oracle_line
from watcher.probability import Estimate
from watcher.render import health_text, percent_text, perp_text, short, top_up_text
from watcher.risk import Advice, perp_top_ups

_HEAD = {
    "fire": "{level}",
    "escalate": "{level} (worse)",
    "repeat": "{level} (still)",
    "recover": "RECOVERED",
    "falling_fast": "FALLING FAST",
}
_ICON = {Level.OK: "✅", Level.WARN: "⚠️", Level.CRITICAL: "🔴", Level.LIQUIDATABLE: "🚨"}


def _money(p: Position, value: int) -> str:
    decimals = len(str(p.base_unit)) - 1
    sym = "$" if p.base_currency == "USD" else ""
    return f"{sym}{short(value, decimals, 2)}"


def position_message(
    p: Position,
    event: Event,
    advice: Advice | None,
    previous: int | None,
    target: int | None = None,
    ttl_under: int | None = None,
    levels: tuple[int, int] | None = None,
    chance: Estimate | None = None,
) -> tuple[str, str]:
    """(subject, text) for an alert about a position; `previous` is an earlier health, for the trend; `levels`
    (warn, critical) name the level a Maker vault's next oracle price brings."""
    level = event.level.name
    head = _HEAD.get(event.kind, event.kind).format(level=level)
    icon = "📉" if event.kind == "falling_fast" else _ICON[event.level]
    subject = f"{head}: {p.label} on {p.protocol}/{p.chain}, health {health_text(p.health)}"
    lines = [f"{icon} {head} · {p.label} · {p.protocol} on {p.chain}"]
    trend = ""
    if previous is not None and p.health is not None and previous != p.health:
        delta = Decimal(p.health - previous).scaleb(-18)
        trend = f" ({'↓' if delta < 0 else '↑'} {abs(delta):.3f})"
    # off-chain venues have no block: say when the venue was read instead
    when = (
        f"block {p.block.number}"
        if p.block.number
        else f"read {time.strftime('%H:%M:%S', time.gmtime(p.block.timestamp))} UTC"
    )
    lines.append(f"Health {health_text(p.health)}{trend} · {when}")
    osm = next_oracle_line(p, *levels) if levels is not None else None
    if osm:
        lines.append(osm)
    if event.level in (Level.WARN, Level.CRITICAL) and event.kind != "recover":
        # under 30 days (or the warn_days_to_liquidation rule's limit): further out it is noise in an alert
        ttl = forecast_line(p, CACHE.get(p), max(30 * 86_400, ttl_under or 0))
        if ttl:
            lines.append(ttl)
        if chance is not None and chance.probability is not None and chance.sigma_annual is not None:
            lines.append(chance_text(chance))
    if advice is not None and event.kind != "recover":
        for lp in advice.liquidation_prices[:3]:
            move = Decimal(lp.move_ppm) / Decimal(10_000)
            if p.liquidatable:
                # already past the price: what it names is where the position is safe again, not a future event
                side = "above" if lp.move_ppm > 0 else "below"
                lines.append(f"{lp.symbol} safe again {side} {_money(p, lp.price)} ({move:+.1f}%)")
            else:
                lines.append(f"{lp.symbol} liquidates at {_money(p, lp.price)} ({move:+.1f}%)")
        acts = [*advice.top_ups[:2], *advice.repayments[:2]]
        fixes = [
            f"{'add' if a.kind == 'supply' else 'repay'} {short(a.amount, a.decimals, 4)} {a.symbol}"
            for a in acts
            if a.feasible
        ]
        if fixes:
            lines.append(f"To reach {health_text(advice.target)}: " + " or ".join(fixes))
    if p.perps and event.kind != "recover":
        lines += [perp_text(p, leg) for leg in p.perps[:3]]
        if len(p.perps) > 3:
            lines.append(f"... and {len(p.perps) - 3} more positions")
        ups = perp_top_ups(p, target) if target is not None else ()
        if ups:
            lines.append(f"To reach {health_text(target)}: " + " and ".join(top_up_text(p, u) for u in ups))
    return subject, "\n".join(lines)


def chance_text(e: Estimate) -> str:
    """ "Liquidation probability within 24 h: 3.2 % (σ 80 %/yr from 499 price returns)", the model named by the
    README and the API document beside it."""
    hours = e.horizon_s / 3600
    span = f"{hours:g} h" if hours < 48 else f"{hours / 24:g} d"
    sigma = f"σ {(e.sigma_annual or 0) * 100:.0f} %/yr from {e.samples} price returns"
    return f"Liquidation probability within {span}: {percent_text(e.probability or 0.0)} ({sigma})"


def chain_message(chain: str, degraded: bool, reason: str, unknown: int = 0, read: int = 0) -> tuple[str, str]:
    """(subject, text) for the watcher's own health on one chain (or venue); `unknown` counts accounts, `read`
    positions."""
    if degraded:
        if read and unknown:
            # part of the chain still reads (e.g. one broken price feed): say how much is unknown, not "everything"
            subject = f"WATCHER DEGRADED: {unknown} account(s) on {chain} cannot be read"
            what = (
                f"positions of {unknown} account(s) there are UNKNOWN, not healthy; {read} others were read as usual."
            )
        else:
            subject = f"WATCHER DEGRADED: cannot read {chain}"
            what = "positions there are UNKNOWN, not healthy."
        text = f"❓ Watcher degraded on {chain}: {what}\n{reason}"
    else:
        subject = f"Watcher recovered on {chain}"
        text = f"✅ Watcher reads {chain} again; positions are checked as usual."
    return subject, text
