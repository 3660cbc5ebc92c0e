"""`watcher simulate`: one check, then every position after what-if price shocks, as tables or JSON.

The JSON shape (`outcome_json`, `simulation_json`) is also what `GET /positions/{id}/simulate` answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from watcher.check import CheckResult, build, build_venues, check_chains, check_venues
from watcher.config import Config, load_config, require_secrets
from watcher.engine.rules import RuleBook
from watcher.model import Level, Position
from watcher.render import action_json, action_text, health_text, make_console, units
from watcher.risk import Advice, Thresholds
from watcher.whatif import At, Outcome, Shock, ShockError, parse_at, parse_shock, simulate

EXIT_OK, EXIT_WARN, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3

_STYLE = {Level.OK: "green", Level.WARN: "yellow", Level.CRITICAL: "bold red", Level.LIQUIDATABLE: "bold white on red"}


def thresholds_for(cfg: Config) -> Callable[[Position], Thresholds]:
    """Each position's thresholds as the daemon judges it: alert overrides applied, the global target."""
    book, target = RuleBook(cfg), cfg.thresholds.target

    def pick(p: Position) -> Thresholds:
        rules = book.rules_for(p)
        return Thresholds(rules.warn, rules.critical, target)

    return pick


def _decimals(p: Position) -> int:
    return len(str(p.base_unit)) - 1


def _health(h: int | None) -> dict[str, Any]:
    return {"raw": h, "value": None if h is None else units(h, 18)}


def _advice_json(p: Position, adv: Advice | None) -> dict[str, Any] | None:
    if adv is None:
        return None
    return {
        "target_raw": adv.target,
        "liquidation_prices": [
            {
                "asset": lp.asset,
                "symbol": lp.symbol,
                "price_raw": lp.price,
                "price": units(lp.price, _decimals(p)),
                "direction": "down" if lp.falling else "up",
            }
            for lp in adv.liquidation_prices
        ],
        "top_ups": [action_json(a) for a in adv.top_ups],
        "repayments": [action_json(a) for a in adv.repayments],
    }


def outcome_json(o: Outcome) -> dict[str, Any]:
    """One position after the shocks: raw integers beside decimal strings."""
    p = o.position
    return {
        "id": p.key,
        "protocol": p.protocol,
        "chain": p.chain,
        "account": p.account,
        "label": p.label,
        "block": {"number": p.block.number, "timestamp": p.block.timestamp},
        "at": o.at,
        "status": o.status,
        "notes": list(o.notes),
        "moved": [
            {"asset": m.asset, "symbol": m.symbol, "before_raw": m.before, "after_raw": m.after} for m in o.moved
        ],
        "health_before": _health(o.health_before),
        "health_after": _health(o.health_after),
        "liquidatable_before": o.liquidatable_before,
        "liquidatable_after": o.liquidatable_after,
        "level_after": o.level_after.word,
        "thresholds": {"warn_raw": o.thresholds.warn, "critical_raw": o.thresholds.critical},
        "advice_after": _advice_json(p, o.advice_after),
    }


def simulation_json(shocks: Sequence[Shock], at: At, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The whole simulation: what was asked, then one entry per position."""
    return {
        "shocks": [{"target": s.target, "bps": s.bps, "text": str(s)} for s in shocks],
        "at": {"ahead_seconds": at.ahead, "timestamp": at.timestamp},
        "rounding": "price * (10000 + bps) // 10000, in each simulator's price units",
        "positions": [outcome_json(o) for o in outcomes],
    }


def render_outcomes(shocks: Sequence[Shock], outcomes: Sequence[Outcome], console: Console) -> None:
    """One table: each position's health before and after, its level and verdict after, and the fix."""
    title = "what if " + (", ".join(str(s) for s in shocks) or "nothing moves")
    t = Table(title=title, title_justify="left", show_lines=True)
    for col in ("account", "protocol", "chain", "moved", "health", "after", "to reach target", "notes"):
        t.add_column(col)
    for o in outcomes:
        p, lvl = o.position, o.level_after
        moved = "\n".join(
            f"{m.symbol} {Decimal((m.after - m.before) * 10_000 // m.before) / 100:+.2f}%" for m in o.moved
        )
        acts = [*o.advice_after.top_ups, *o.advice_after.repayments] if o.advice_after else []
        verdict = "LIQUIDATABLE" if o.liquidatable_after else lvl.word
        t.add_row(
            p.label,
            p.protocol,
            f"{p.chain} #{p.block.number}" if p.block.number else p.chain,
            moved or "-",
            health_text(o.health_before),
            f"[{_STYLE.get(lvl, '')}]{health_text(o.health_after)} {verdict}[/]",
            " or\n".join(action_text(a) for a in acts) or "-",
            "\n".join(o.notes) or ("" if o.status != "unaffected" else "no shock names its assets"),
        )
    console.print(t)


def exit_code(outcomes: Sequence[Outcome], result: CheckResult) -> int:
    """1 if anything is at warn or worse after the shocks; else 3 if something was unreadable or not shockable."""
    if any(o.level_after is not Level.OK for o in outcomes):
        return EXIT_WARN
    if result.unreadable or any(o.status == "not shockable" for o in outcomes):
        return EXIT_UNKNOWN
    return EXIT_OK


def read_all(cfg: Config) -> CheckResult:
    """One check of every chain and venue, as `watcher check` reads them."""
    from watcher.cli import connect

    readers, venues = build(cfg), build_venues(cfg)
    require_secrets(cfg, {r.chain for r in readers})

    async def once() -> CheckResult:
        clients = await connect(cfg, {r.chain for r in readers})
        try:
            chains, off_chain = await asyncio.gather(check_chains(clients, readers), check_venues(venues))
        finally:
            for c in clients.values():
                await c.close()
        chains.merge(off_chain)
        return chains

    return asyncio.run(once())


def cmd_simulate(args: argparse.Namespace) -> int:
    """Every configured position after the given shocks: health, verdict and the fix, per position."""
    try:
        shocks = [parse_shock(s) for s in args.shock or ()]
        at = parse_at(args.at)
    except ShockError as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not shocks:
        print("watcher: error: give at least one --shock ASSET=-20%", file=sys.stderr)
        return EXIT_USAGE
    cfg = load_config(args.config)
    result = read_all(cfg)
    try:
        outcomes = simulate(result.positions, shocks, at, thresholds_for(cfg))
    except ShockError as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        # the asset may belong to a source that could not be read: say so, and exit as unknown rather than as a typo
        for u in result.unreadable:
            print(f"watcher: {u.protocol} on {u.chain} could not be read: {u.reason}", file=sys.stderr)
        return EXIT_UNKNOWN if result.unreadable else EXIT_USAGE
    if args.json:
        doc = simulation_json(shocks, at, outcomes)
        doc["unknown"] = [
            {"protocol": u.protocol, "chain": u.chain, "accounts": [a.address for a in u.accounts], "reason": u.reason}
            for u in result.unreadable
        ]
        print(json.dumps(doc, indent=2))
    else:
        console = make_console()
        render_outcomes(shocks, outcomes, console)
        for u in result.unreadable:
            who = ", ".join(a.label for a in u.accounts)
            console.print(f"[magenta]UNKNOWN[/] {u.protocol} on {u.chain} ({who}): {u.reason}")
    return exit_code(outcomes, result)


def add_parser(sub: Any) -> None:
    """The `simulate` subcommand, with the common options (`-c`, the log and colour options)."""
    from watcher.commands.common import command

    s = command(sub, "simulate", "every position after what-if price shocks (health, verdict, the fix)")
    s.add_argument("--shock", action="append", metavar="ASSET=-20%", help="a symbol or token address and a move")
    s.add_argument("--at", metavar="T", help="+30d (after the read block), unix seconds or ISO-8601")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_simulate)
