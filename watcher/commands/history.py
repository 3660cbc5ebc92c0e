"""`watcher history`: the stored readings of each position, as a table with a health sparkline, or as CSV."""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from eth_utils import is_hex_address, to_checksum_address

from watcher.config import ConfigError, load_config

EPILOG = """examples:
  watcher history                                   # every position, all stored history
  watcher history --since 7d                        # the last 7 days (also 12h, 30m, 2w, unix seconds, ISO-8601)
  watcher history aave_v3:ethereum:0xabc... --since 2026-01-01T00:00:00Z
  watcher history --csv > history.csv               # ISO-8601 UTC times, raw integer amounts

It reads storage.path, the SQLite file `watcher run` writes, and never connects to anything."""

BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 48
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"([0-9]{1,9})([smhdw])")
_SECONDS = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,9})?")


def add(sub: Any, command: Any) -> None:
    """`watcher history`."""
    p = command(sub, "history", "show the stored health history of each position", EPILOG)
    p.add_argument("position", nargs="?", metavar="POSITION", help="a position id (deployment:chain:account[:market])")
    p.add_argument("--since", metavar="WHEN", help="7d, 12h, 30m, 2w, unix seconds or ISO-8601 (default: all)")
    p.add_argument("--csv", action="store_true", help="print CSV instead of tables")
    p.set_defaults(func=cmd_history)


def parse_since(value: str, now: float) -> float:
    """Unix seconds from `7d` (ago), unix seconds or ISO-8601 (UTC unless it says otherwise); ConfigError naming it."""
    text = value.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        return now - int(ago.group(1)) * _UNITS[ago.group(2)]
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ConfigError(
            f"--since: {value[:40]!r} is not a duration (7d, 12h, 30m), unix seconds nor an ISO-8601 time"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def sparkline(values: list[int | None], width: int = SPARK_WIDTH) -> str:
    """A bar per bucket of readings: the bucket's lowest health, so a dip is never averaged away; blank: no debt."""
    if not values:
        return ""
    buckets = [values[i * len(values) // width : (i + 1) * len(values) // width] for i in range(width)]
    lows = [min((v for v in b if v is not None), default=None) if b else "skip" for b in buckets]
    points = [v for v in lows if v != "skip"]
    finite = [v for v in points if isinstance(v, int)]
    if not finite:
        return " " * len(points)
    lo, hi = min(finite), max(finite)
    out = []
    for v in points:
        if not isinstance(v, int):
            out.append(" ")
        elif hi == lo:
            out.append(BARS[len(BARS) // 2])
        else:
            out.append(BARS[(v - lo) * (len(BARS) - 1) // (hi - lo)])
    return "".join(out)


def _health(raw: Any) -> int | None:
    return None if raw is None else int(raw)


def _health_text(h: int | None) -> str:
    return "∞" if h is None else f"{Decimal(h).scaleb(-18):.4f}"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _position(value: str) -> str:
    """A position id as stored, its account in checksum case (explorers print it lower case)."""
    parts = value.strip().split(":")
    if len(parts) >= 3 and is_hex_address(parts[2]):
        parts[2] = to_checksum_address(parts[2])
    return ":".join(parts)


def write_csv(rows: list[tuple[Any, ...]]) -> None:
    """CSV on stdout: one reading a line, raw integers (health as WAD, amounts in the position's base units)."""
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(
        ["position", "time", "unix", "block", "block_hash", "level", "health_raw", "health",
         "total_collateral_raw", "total_debt_raw"]
    )  # fmt: skip
    for position, at, block, block_hash, health, level, coll, debt, _ in rows:
        h = _health(health)
        exact = "" if h is None else str(Decimal(h).scaleb(-18).normalize())
        out.writerow([position, _iso(at), at, block, block_hash, level, "" if h is None else h, exact, coll, debt])


def render_tables(rows: list[tuple[Any, ...]]) -> None:
    """A table per position: how many readings over what time, the sparkline, and first, last and lowest health."""
    from rich.table import Table

    from watcher.model import Level
    from watcher.render import LEVEL_STYLE, make_console

    console = make_console()
    by: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by.setdefault(r[0], []).append(r)
    for position, readings in by.items():
        healths = [_health(r[4]) for r in readings]
        finite = [(h, r) for h, r in zip(healths, readings, strict=True) if h is not None]
        low = min(finite, key=lambda x: x[0]) if finite else None
        label = readings[-1][8]
        title = f"{position}" + (f" ({label})" if label and label not in position else "")
        t = Table(title=title, title_justify="left", caption_justify="left")
        t.caption = f"{len(readings)} readings, {_iso(readings[0][1])} to {_iso(readings[-1][1])}"
        for col in ("health", "first", "last", "min", "min at", "level now"):
            t.add_column(col)
        level = readings[-1][5]
        style = next((LEVEL_STYLE[lv] for lv in Level if lv.word == level), "")
        t.add_row(
            sparkline(healths),
            _health_text(healths[0]),
            _health_text(healths[-1]),
            _health_text(low[0]) if low else "∞",
            f"{_iso(low[1][1])} (block {low[1][2]})" if low else "-",
            f"[{style}]{level}[/]" if style else str(level),
        )
        console.print(t)


def cmd_history(args: argparse.Namespace) -> int:
    """Print the stored history: exit 0, or 2 naming an unknown position, a bad --since or a missing database."""
    from watcher.store import Store

    cfg = load_config(args.config)
    since = parse_since(args.since, time.time()) if args.since else float("-inf")
    path = os.path.expanduser(cfg.storage.path)
    if not os.path.isfile(path):
        raise ConfigError(f"storage.path: {path}: no database yet (`watcher run` writes it)")
    store = Store(path)
    position = _position(args.position) if args.position else None
    if position is not None and position not in store.history_positions():
        known = store.history_positions()
        shown = ", ".join(known[:5]) + (f" and {len(known) - 5} more" if len(known) > 5 else "")
        raise ConfigError(f"position {position[:120]!r} has no stored history (known: {shown or 'none'})")
    rows = store.history_since(since, position)
    if args.csv:
        write_csv(rows)
    elif not rows:
        print("no readings stored" + (f" since {_iso(since)}" if args.since else ""))
    else:
        render_tables(rows)
    return 0
