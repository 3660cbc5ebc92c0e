"""Display: integer amounts to decimal text only here, a terminal table, and the JSON document."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from watcher.check import CheckResult
from watcher.model import WAD, Leg, Level, Position
from watcher.risk import Action, Advice, LiquidationPrice, Thresholds, level_of

_LEVEL_STYLE = {
    Level.OK: "green",
    Level.WARN: "yellow",
    Level.CRITICAL: "bold red",
    Level.LIQUIDATABLE: "bold white on red",
    Level.UNKNOWN: "magenta",
}


def make_console() -> Console:
    """A console; when output is not a terminal, wide enough that tables do not wrap."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=160)


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


def _action_text(a: Action) -> str:
    verb = "add" if a.kind == "supply" else "repay"
    amount = short(a.amount, a.decimals, 6)
    if a.amount and amount.strip("0.,") == "":
        amount = units(a.amount, a.decimals)  # a dust amount: exact rather than a misleading "0"
    text = f"{verb} {amount} {a.symbol}"
    return text if a.feasible else text + " (not enough alone)"


def render_table(result: CheckResult, advices: dict[str, Advice], thresholds: Thresholds, console: Console) -> None:
    """One table per account."""
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
            advice = " or\n".join(_action_text(a) for a in acts) if acts else "-"
            t.add_row(
                p.protocol,
                f"{p.chain} #{p.block.number}",
                "\n".join(_leg_text(p, leg) for leg in p.collateral) or "-",
                "\n".join(_leg_text(p, leg) for leg in p.debt) or "-",
                f"[{_LEVEL_STYLE[lvl]}]{health_text(p.health)} {lvl.value}[/]",
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


def _action_json(a: Action) -> dict[str, Any]:
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


def position_json(p: Position, adv: Advice | None, thresholds: Thresholds) -> dict[str, Any]:
    """A position as a JSON-ready dict: raw integers beside decimal strings."""
    return {
        "id": p.key,
        "protocol": p.protocol,
        "chain": p.chain,
        "account": p.account,
        "label": p.label,
        "block": {"number": p.block.number, "timestamp": p.block.timestamp},
        "level": level_of(p, thresholds).value,
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
            "top_ups": [_action_json(a) for a in adv.top_ups],
            "repayments": [_action_json(a) for a in adv.repayments],
        },
    }


def result_json(result: CheckResult, advices: dict[str, Advice], thresholds: Thresholds) -> dict[str, Any]:
    """The whole check as a JSON-ready dict."""
    return {
        "thresholds": {
            "warn_raw": thresholds.warn,
            "critical_raw": thresholds.critical,
            "target_raw": thresholds.target,
        },
        "positions": [position_json(p, advices.get(p.key), thresholds) for p in result.positions],
        "unknown": [
            {"protocol": u.protocol, "chain": u.chain, "accounts": [a.address for a in u.accounts], "reason": u.reason}
            for u in result.unreadable
        ],
        "reads": {
            name: {"eth_calls": s.eth_calls, "calls": s.calls, "rounds": s.rounds, "seconds": round(s.seconds, 4)}
            for name, s in result.stats.items()
        },
        "seconds": round(result.seconds, 4),
    }


__all__ = ["WAD", "render_table", "result_json", "units"]
