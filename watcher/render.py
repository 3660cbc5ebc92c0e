"""Display: integer amounts to decimal text only here, a terminal table, and the JSON document."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any

from rich.console import Console
from rich.table import Table

from watcher.check import CheckResult
from watcher.forecast_doc import CACHE, add_forecast, days_text
from watcher.model import WAD, Leg, Level, PerpLeg, Position
from watcher.next_oracle import next_oracle_cell, next_oracle_doc
from watcher.output import current
from watcher.risk import Action, Advice, LiquidationPrice, MarginTopUp, Thresholds, level_of, perp_top_ups

_LEVEL_STYLE = {
    Level.OK: "green",
    Level.WARN: "yellow",
    Level.CRITICAL: "bold red",
    Level.LIQUIDATABLE: "bold white on red",
    Level.UNKNOWN: "magenta",
}
LEVEL_STYLE = _LEVEL_STYLE  #: a level's rich style, for other tables


def make_console() -> Console:
    """A console; when output is not a terminal, wide enough that tables do not wrap; plain under --no-color."""
    out = current()
    # color_system=None drops every escape code, bold too: NO_COLOR alone would keep those in rich
    plain: dict[str, Any] = {"color_system": None} if out.no_color or os.environ.get("NO_COLOR") else {}
    probe = Console(**plain)
    return probe if probe.is_terminal else Console(width=160, **plain)


def units(amount: int, decimals: int) -> str:
    """An integer amount of base units as an exact decimal string."""
    if decimals == 0:
        return str(amount)
    s = f"{Decimal(amount).scaleb(-decimals):f}"  # never exponent notation
    return s.rstrip("0").rstrip(".") if "." in s else s


def short(amount: int, decimals: int, places: int = 4) -> str:
    """An integer amount rounded for a human, with thousands separators."""
    d = Decimal(amount).scaleb(-decimals)
    return f"{d:,.{places}f}".rstrip("0").rstrip(".")


def frac_text(x: Fraction, places: int = 8, group: bool = False) -> str:
    """An exact rational (a perp price) as a decimal string rounded to `places`, trailing zeros dropped."""
    with localcontext() as ctx:
        ctx.prec = 80
        d = (Decimal(x.numerator) / Decimal(x.denominator)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
    text = f"{d:,f}" if group else f"{d:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def price_text(x: Fraction) -> str:
    """A price for a human: 2 decimals above 1,000, more below, so small-coin prices keep their digits."""
    places = 2 if abs(x) >= 1000 else 4 if abs(x) >= 1 else 8
    return frac_text(x, places, group=True)


def margin_ratio(p: Position, leg: PerpLeg) -> int | None:
    """Equity over requirement (WAD) of the margin group a perp leg is in: its own if isolated, else the cross."""
    if leg.margin_mode == "isolated":
        equity, req = leg.equity, leg.requirement
    else:
        equity, req = p.cross_equity, sum(x.requirement for x in p.perps if x.margin_mode == "cross")
    return None if equity is None or req <= 0 else equity * WAD // req


def perp_move_pct(leg: PerpLeg) -> Fraction | None:
    """The move from the mark to our liquidation price, in percent."""
    if leg.liquidation_price is None or not leg.mark_price:
        return None
    return (leg.liquidation_price - leg.mark_price) * 100 / leg.mark_price


def perp_text(p: Position, leg: PerpLeg) -> str:
    """One line: market, side and size, mark, tier and rate, and where it liquidates."""
    size = short(abs(leg.size), leg.size_decimals)
    tier = f"tier {leg.tier} " if leg.tier is not None else ""
    head = f"{leg.market} {leg.side} {size} @ {price_text(leg.mark_price)} · {tier}MMR {frac_text(leg.rate * 100, 3)}%"
    move = perp_move_pct(leg)
    if leg.liquidation_price is None or move is None:
        return head + " · no liquidation price"
    crossing = ""
    if leg.liquidation_tier is not None and leg.liquidation_tier != leg.tier:
        crossing = f", in tier {leg.liquidation_tier}"
    return head + f" · liq {price_text(leg.liquidation_price)} ({frac_text(move, 1)}%{crossing})"


def top_up_text(p: Position, up: MarginTopUp) -> str:
    """Collateral to add to one margin group."""
    where = "cross margin" if up.scope == "cross" else f"the isolated {up.scope} position"
    return f"add {_money(p, up.amount)} to {where}"


def health_text(h: int | None) -> str:
    """A health factor for display; unbounded when there is no debt."""
    return "∞" if h is None else f"{Decimal(h).scaleb(-18):.4f}"


def _base_decimals(p: Position) -> int:
    return len(str(p.base_unit)) - 1


def _money(p: Position, value: int) -> str:
    sym = "$" if p.base_currency == "USD" else ""
    return f"{sym}{short(value, _base_decimals(p), 2)}"


def _leg_text(p: Position, leg: Leg) -> str:
    return f"{short(leg.amount, leg.decimals)} {leg.symbol} ({_money(p, leg.value)})"


def _lp_text(p: Position, lp: LiquidationPrice) -> str:
    move = Decimal(lp.move_ppm) / Decimal(10_000)
    return f"{lp.symbol} {_money(p, lp.price)} ({move:+.2f}%)"


def action_text(a: Action) -> str:
    """A top-up or repayment in words: `add 1.5 WETH`, marked where it is not enough alone."""
    verb = "add" if a.kind == "supply" else "repay"
    amount = short(a.amount, a.decimals, 6)
    if a.amount and amount.strip("0.,") == "":
        amount = units(a.amount, a.decimals)  # a dust amount: exact rather than a misleading "0"
    text = f"{verb} {amount} {a.symbol}"
    return text if a.feasible else text + " (not enough alone)"


def percent_text(probability: float) -> str:
    """A probability as a percentage for people: "3.2 %", "< 0.1 %", "> 99.9 %"."""
    if probability < 0.0005:
        return "< 0.1 %"
    if probability > 0.9995:
        return "> 99.9 %"
    return f"{probability * 100:.1f} %"


def render_table(
    result: CheckResult,
    advices: dict[str, Advice],
    thresholds: Thresholds,
    console: Console,
    chain_names: Mapping[str, str] | None = None,
    chances: Mapping[str, Any] | None = None,
) -> None:
    """One table per account; `chain_names` shows a chain by another name (the demo's "anvil (31337)"), `chances`
    the 24 h liquidation probability by position (watcher/probability.py's Estimate)."""
    names = chain_names or {}
    by_account: dict[str, list[Position]] = {}
    for p in result.positions:
        by_account.setdefault(f"{p.label} {p.account}", []).append(p)
    for title, positions in by_account.items():
        t = Table(title=title, title_justify="left", show_lines=True)
        for col in ("protocol", "chain", "collateral", "debt", "health", "liquidation price", "to reach target"):
            t.add_column(col)
        for p in positions:
            lvl = level_of(p, thresholds)
            adv = advices.get(p.key)
            lps = "\n".join(_lp_text(p, lp) for lp in adv.liquidation_prices) if adv else ""
            acts = [*adv.top_ups, *adv.repayments] if adv else []
            advice = " or\n".join(action_text(a) for a in acts) if acts else "-"
            debt = "\n".join(_leg_text(p, leg) for leg in p.debt)
            if p.perps:
                debt = "\n".join(perp_text(p, leg) for leg in p.perps)
                ups = perp_top_ups(p, thresholds.target)
                advice = " and\n".join(top_up_text(p, u) for u in ups) if ups else "-"
            f = CACHE.get(p, lvl is Level.OK)
            ttl = f"liq. in {days_text(f.at - p.block.timestamp)}" if f.at is not None and not p.liquidatable else ""
            osm = next_oracle_cell(p, thresholds.warn, thresholds.critical)
            if osm:
                ttl = f"{ttl}\n{osm}" if ttl else osm
            chance = (chances or {}).get(p.key)
            if chance is not None and chance.probability is not None and p.has_debt and not p.liquidatable:
                ttl += ("\n" if ttl else "") + f"24 h liq. {percent_text(chance.probability)}"
            t.add_row(
                p.protocol,
                # "block", not "#": "local #36" read as a chain id
                f"{names.get(p.chain, p.chain)}\nblock {p.block.number}"
                if p.block.number
                else names.get(p.chain, p.chain),
                "\n".join(_leg_text(p, leg) for leg in p.collateral) or "-",
                debt or "-",
                f"[{_LEVEL_STYLE[lvl]}]{health_text(p.health)} {lvl.word}[/]" + (f"\n{ttl}" if ttl else ""),
                lps or "-",
                advice,
            )
        console.print(t)
    for u in result.unreadable:
        who = ", ".join(a.label for a in u.accounts)
        console.print(f"[magenta]UNKNOWN[/] {u.protocol} on {u.chain} ({who}): {u.reason}")


def _leg_json(leg: Leg) -> dict[str, Any]:
    return {
        "asset": leg.asset,
        "symbol": leg.symbol,
        "decimals": leg.decimals,
        "amount_raw": leg.amount,
        "amount": units(leg.amount, leg.decimals),
        "price_raw": leg.price,
        "value_raw": leg.value,
        "liquidation_threshold_bps": leg.weight_bps,
    }


def action_json(a: Action) -> dict[str, Any]:
    """A top-up or repayment as JSON: raw integers beside the decimal amount."""
    return {
        "kind": a.kind,
        "asset": a.asset,
        "symbol": a.symbol,
        "amount_raw": a.amount,
        "amount": units(a.amount, a.decimals),
        "value_raw": a.value,
        "health_after_raw": a.health_after,
        "feasible": a.feasible,
    }


def _opt_price(x: Fraction | None) -> dict[str, Any]:
    return {"value": None, "exact": None} if x is None else {"value": frac_text(x), "exact": str(x)}


def perp_json(p: Position, leg: PerpLeg) -> dict[str, Any]:
    """A perp leg as a JSON-ready dict: raw integers in the position's base units, prices exact and rounded."""
    decimals = _base_decimals(p)
    ratio = margin_ratio(p, leg)
    move = perp_move_pct(leg)
    return {
        "market": leg.market,
        "side": leg.side,
        "size_raw": leg.size,
        "size": units(leg.size, leg.size_decimals),
        "entry_price": _opt_price(leg.entry_price),
        "mark_price": _opt_price(leg.mark_price),
        "notional_raw": leg.notional,
        "notional": units(leg.notional, decimals),
        "requirement_raw": leg.requirement,
        "requirement": units(leg.requirement, decimals),
        "maintenance_rate": frac_text(leg.rate, 12),
        "margin_mode": leg.margin_mode,
        "tier": leg.tier,
        "equity_raw": leg.equity,
        "margin_ratio_raw": ratio,
        "margin_ratio": None if ratio is None else units(ratio, 18),
        "liquidation_price": _opt_price(leg.liquidation_price),
        "liquidation_move_pct": None if move is None else frac_text(move, 4),
        "liquidation_tier": leg.liquidation_tier,
        "venue_liquidation_price": _opt_price(leg.venue_liquidation_price),
        "details": dict(leg.details),
    }


def position_json(
    p: Position, adv: Advice | None, thresholds: Thresholds, protocol: str | None = None
) -> dict[str, Any]:
    """A position as a JSON-ready dict: raw integers beside decimal strings.

    `protocol` is the protocols/ file the deployment came from (`Config.protocol_of`); `deployment`, the name that
    starts the id, is the position's own protocol field, which names the deployment.
    """
    doc = _position_json(p, adv, thresholds, protocol)
    add_forecast(doc, p, ok=doc["level"] == "ok")
    if "osm" in p.details:  # a Maker vault: its OSM's queued price, null when the oracle does not move
        doc["next_oracle"] = next_oracle_doc(p, thresholds.warn, thresholds.critical)
    if p.perps:
        decimals = _base_decimals(p)
        doc["perps"] = [perp_json(p, leg) for leg in p.perps]
        doc["cross_equity_raw"] = p.cross_equity
        doc["margin_top_ups"] = [
            {
                "scope": u.scope,
                "amount_raw": u.amount,
                "amount": units(u.amount, decimals),
                "health_after_raw": u.health_after,
            }
            for u in perp_top_ups(p, thresholds.target)
        ]
    return doc


def _position_json(p: Position, adv: Advice | None, thresholds: Thresholds, protocol: str | None) -> dict[str, Any]:
    return {
        "id": p.key,
        "protocol": protocol or p.protocol,
        "deployment": p.protocol,
        "chain": p.chain,
        "account": p.account,
        "label": p.label,
        "block": {"number": p.block.number, "timestamp": p.block.timestamp},
        "level": level_of(p, thresholds).word,
        "health_raw": p.health,
        "health": None if p.health is None else units(p.health, 18),
        "liquidatable": p.liquidatable,
        "base_currency": p.base_currency,
        "base_unit": p.base_unit,
        "total_collateral_raw": p.total_collateral,
        "total_debt_raw": p.total_debt,
        "collateral": [_leg_json(x) for x in p.collateral],
        "debt": [_leg_json(x) for x in p.debt],
        "details": dict(p.details),
        "liquidation_prices": [
            {
                "asset": lp.asset,
                "symbol": lp.symbol,
                "current_raw": lp.current,
                "price_raw": lp.price,
                "price": units(lp.price, _base_decimals(p)),
                "move_pct": str(Decimal(lp.move_ppm) / Decimal(10_000)),
                "direction": "down" if lp.falling else "up",
            }
            for lp in (adv.liquidation_prices if adv else ())
        ],
        "advice": None
        if adv is None
        else {
            "target_raw": adv.target,
            "top_ups": [action_json(a) for a in adv.top_ups],
            "repayments": [action_json(a) for a in adv.repayments],
        },
    }


def result_json(
    result: CheckResult,
    advices: dict[str, Advice],
    thresholds: Thresholds,
    protocol_of: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """The whole check as a JSON-ready dict; `protocol_of` maps a deployment's name to its protocol."""
    family = protocol_of or (lambda name: name)
    return {
        "thresholds": {
            "warn_raw": thresholds.warn,
            "critical_raw": thresholds.critical,
            "target_raw": thresholds.target,
        },
        "positions": [position_json(p, advices.get(p.key), thresholds, family(p.protocol)) for p in result.positions],
        "unknown": [
            {
                "protocol": family(u.protocol),
                "deployment": u.protocol,
                "chain": u.chain,
                "accounts": [a.address for a in u.accounts],
                "reason": u.reason,
            }
            for u in result.unreadable
        ],
        "reads": {
            name: {"eth_calls": s.eth_calls, "calls": s.calls, "rounds": s.rounds, "seconds": round(s.seconds, 4)}
            for name, s in result.stats.items()
        },
        "seconds": round(result.seconds, 4),
    }


__all__ = ["WAD", "render_table", "result_json", "units"]
