"""Texts of the Telegram command answers: a position document (as the API serves it) for a phone screen."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from watcher.messages import chance_text
from watcher.probability import Estimate
from watcher.render import health_text

#: Worst first: what /status sorts by (unknown is after the levels that are known to be bad, before ok).
SEVERITY = {"liquidatable": 0, "critical": 1, "warn": 2, "unknown": 3, "ok": 4}
_ICON = {"ok": "✅", "warn": "⚠️", "critical": "🔴", "liquidatable": "🚨", "unknown": "❓"}


def _dec(text: Any) -> Decimal | None:
    try:
        return Decimal(str(text))
    except (InvalidOperation, ValueError):
        return None


def amount(text: Any, places: int = 4) -> str:
    """A decimal string from a document, rounded for a human with thousands separators."""
    d = _dec(text)
    if d is None:
        return "?"
    shown = f"{d:,.{places}f}"
    return shown.rstrip("0").rstrip(".") if "." in shown else shown


def money(doc: dict[str, Any], text: Any) -> str:
    """An amount in the position's base currency ($ for USD)."""
    sym = "$" if doc.get("base_currency") == "USD" else ""
    return f"{sym}{amount(text, 2)}"


def _base_units(doc: dict[str, Any], raw: Any) -> str:
    """A raw amount in the position's base units as decimal text."""
    unit = doc.get("base_unit")
    if not isinstance(raw, int) or not isinstance(unit, int) or unit <= 0:
        return "?"
    return str(Decimal(raw) / Decimal(unit))


def health_of(doc: dict[str, Any]) -> str:
    """The document's health for display (∞ without debt)."""
    raw = doc.get("health_raw")
    return health_text(raw if isinstance(raw, int) else None)


def sort_key(doc: dict[str, Any]) -> tuple[int, int, int, str]:
    """Worst first: by level, then lowest health (no debt last), then id."""
    raw = doc.get("health_raw")
    health = raw if isinstance(raw, int) else 0
    return (SEVERITY.get(str(doc.get("level")), 3), 0 if isinstance(raw, int) else 1, health, str(doc.get("id")))


def where(doc: dict[str, Any]) -> str:
    """`protocol on chain`, with the deployment's own name where it differs (a fork, a local deployment)."""
    protocol, deployment = doc.get("protocol"), doc.get("deployment")
    named = f"{protocol} ({deployment})" if deployment and deployment != protocol else f"{protocol}"
    return f"{named} on {doc.get('chain')}"


def status_line(doc: dict[str, Any]) -> str:
    """One /status line: label, protocol, chain, health, level."""
    level = str(doc.get("level"))
    stale = " (stale)" if doc.get("stale") else ""
    who = doc.get("label") or doc.get("account")
    return f"{_ICON.get(level, '❓')} {who} · {where(doc)} · health {health_of(doc)} · {level}{stale}"


def _legs(doc: dict[str, Any], key: str) -> list[str]:
    out = []
    for leg in doc.get(key) or []:
        if isinstance(leg, dict):
            value = _base_units(doc, leg.get("value_raw"))
            out.append(f"{amount(leg.get('amount'))} {leg.get('symbol')} ({money(doc, value)})")
    return out


def _perp(doc: dict[str, Any], leg: dict[str, Any]) -> str:
    mark = (leg.get("mark_price") or {}).get("value")
    liq = (leg.get("liquidation_price") or {}).get("value")
    move = leg.get("liquidation_move_pct")
    at = f"liquidates at {amount(liq, 4)} ({amount(move, 1)}%)" if liq is not None else "no liquidation price"
    return f"{leg.get('market')} {leg.get('side')} {amount(leg.get('size'))} @ {amount(mark, 4)} · {at}"


def _actions(doc: dict[str, Any]) -> list[str]:
    advice = doc.get("advice")
    if not isinstance(advice, dict):
        return []
    fixes = []
    for a in [*(advice.get("top_ups") or [])[:2], *(advice.get("repayments") or [])[:2]]:
        if isinstance(a, dict):
            verb = "add" if a.get("kind") == "supply" else "repay"
            tail = "" if a.get("feasible") else " (not enough alone)"
            fixes.append(f"{verb} {amount(a.get('amount'), 6)} {a.get('symbol')}{tail}")
    if not fixes:
        return []
    target = advice.get("target_raw")
    return [f"To reach {health_text(target if isinstance(target, int) else None)}: " + " or ".join(fixes)]


def _chance(doc: dict[str, Any]) -> list[str]:
    """The 24 h liquidation probability the document carries, as an alert message says it."""
    for e in doc.get("liquidation_probability") or []:
        if isinstance(e, dict) and e.get("horizon_s") == 86_400 and isinstance(e.get("probability"), float):
            sigma, samples = e.get("sigma_annual"), e.get("samples")
            if isinstance(sigma, float) and isinstance(samples, int):
                return [chance_text(Estimate(86_400, e["probability"], sigma, samples, str(e.get("model"))))]
    return []


def position_text(doc: dict[str, Any]) -> str:
    """/position: the head, the legs, liquidation prices and the advice the stored document holds."""
    level = str(doc.get("level"))
    block = doc.get("block") or {}
    lines = [
        f"{_ICON.get(level, '❓')} {doc.get('label') or doc.get('account')} · {where(doc)}",
        f"Health {health_of(doc)} · {level} · block {block.get('number')}",
        f"id: {doc.get('id')}",
    ]
    if doc.get("stale"):
        lines.append(f"Stale: {doc.get('stale_reason')}")
    for title, key in (("Collateral", "collateral"), ("Debt", "debt")):
        legs = _legs(doc, key)
        if legs:
            lines.append(f"{title}: " + ", ".join(legs))
    for lp in doc.get("liquidation_prices") or []:
        if isinstance(lp, dict):
            move = _dec(lp.get("move_pct"))
            shown = "?" if move is None else f"{move:+.1f}"
            lines.append(f"{lp.get('symbol')} liquidates at {money(doc, lp.get('price'))} ({shown}%)")
    lines += [_perp(doc, leg) for leg in (doc.get("perps") or [])[:5] if isinstance(leg, dict)]
    lines += _chance(doc)
    lines += _actions(doc)
    for up in doc.get("margin_top_ups") or []:
        if isinstance(up, dict):
            lines.append(f"To reach the target: add {money(doc, up.get('amount'))} to {up.get('scope')} margin")
    return "\n".join(lines)
