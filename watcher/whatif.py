"""What-if shocks: every position's health, verdict and advice after price moves, replayed on its exact simulator.

The one public entry is `simulate(positions, shocks, at, thresholds)`; `parse_shock` and `parse_at` read the user's
text (CLI, API, chat commands). A shock of `bps` basis points sets a price p to p * (10000 + bps) // 10000: integer
math, rounded down, in the simulator's own price units (so a relative move means the same on every protocol).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from watcher.alerts import classify
from watcher.model import BPS, WAD, Leg, Level, Position, Simulator
from watcher.risk import Advice, Thresholds, advise

MIN_BPS = -9_999  #: a shock must leave a positive price: above -100 %
MAX_BPS = 1_000_000  #: +10,000 %: a bigger move is a typo, not a scenario
MAX_AHEAD = 10 * 365 * 86400  #: `at` at most ten years after the read


class ShockError(ValueError):
    """A shock, `at` or target that cannot be applied; the message names the bad value."""


@dataclass(frozen=True, slots=True)
class Shock:
    """Move every price of one asset (a symbol, or a token address) by `bps` basis points."""

    target: str  #: a symbol as the protocols name it (case-insensitive), or a 0x token address
    bps: int  #: signed basis points: -2000 is -20 %

    @property
    def is_address(self) -> bool:
        """Whether the target is a token address rather than a symbol."""
        return _ADDRESS.fullmatch(self.target) is not None

    def apply(self, price: int) -> int:
        """The shocked price, rounded down."""
        return price * (BPS + self.bps) // BPS

    def __str__(self) -> str:
        pct = f"{abs(self.bps) // 100}" + (f".{abs(self.bps) % 100:02d}".rstrip("0") if self.bps % 100 else "")
        return f"{self.target}{'-' if self.bps < 0 else '+'}{pct}%"


@dataclass(frozen=True, slots=True)
class Moved:
    """One price a shock changed in one position."""

    asset: str  #: the key the simulator's with_price takes (a token address, or a perp market's symbol)
    symbol: str
    before: int  #: in the simulator's price units
    after: int


@dataclass(frozen=True)
class Outcome:
    """One position after the shocks."""

    position: Position
    status: str  #: "shocked", "unaffected" (no shock names its assets) or "not shockable" (see `notes`)
    moved: tuple[Moved, ...]
    notes: tuple[str, ...]  #: why a shock named here was not applied (never silently unchanged)
    at: int  #: the timestamp the after-state is accrued to
    health_before: int | None
    health_after: int | None
    liquidatable_before: bool
    liquidatable_after: bool
    level_after: Level
    advice_after: Advice | None  #: top-ups/repayments restoring thresholds.target on the shocked simulator
    thresholds: Thresholds = field(repr=False)


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SHOCK = re.compile(r"\s*([A-Za-z0-9._\-/]+?)\s*[=:\s]\s*([+-]?)(\d{1,7})(?:\.(\d{1,2}))?\s*%?\s*")
_AHEAD = re.compile(r"\+(\d{1,9})([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_shock(text: str) -> Shock:
    """`WETH=-20%`, `WETH:-20`, `WETH -20%`, `0x..=+5.5%`: a Shock, or a ShockError naming the text."""
    m = _SHOCK.fullmatch(text) if isinstance(text, str) and len(text) <= 120 else None
    if m is None:
        raise ShockError(f"shock {str(text)[:60]!r}: expected ASSET=-20% (or ASSET:-20, ASSET -20%)")
    target, sign, whole, frac = m.groups()
    if target[0] in "+-":
        raise ShockError(f"shock {text!r}: expected ASSET=-20% (or ASSET:-20, ASSET -20%)")
    bps = int(whole) * 100 + int((frac or "0").ljust(2, "0"))
    bps = -bps if sign == "-" else bps
    if not MIN_BPS <= bps <= MAX_BPS:
        raise ShockError(f"shock {text!r}: the move must be above -100% and at most +10000%")
    if target.lower().startswith("0x") and not _ADDRESS.fullmatch(target):
        raise ShockError(f"shock {text!r}: {target!r} is not a 20-byte hex address")
    return Shock(target, bps)


@dataclass(frozen=True, slots=True)
class At:
    """When to evaluate the shocked state: `ahead` seconds after each position's read block, or at `timestamp`."""

    ahead: int = 0
    timestamp: int | None = None

    def of(self, p: Position) -> int:
        """The timestamp for this position."""
        return self.timestamp if self.timestamp is not None else p.block.timestamp + self.ahead


def parse_at(text: str | None) -> At:
    """`+30d` (s, m, h, d, w after the read block), unix seconds, or an ISO-8601 time (UTC unless given)."""
    if text is None or text == "":
        return At()
    raw = str(text).strip()
    m = _AHEAD.fullmatch(raw)
    if m:
        ahead = int(m.group(1)) * _UNIT[m.group(2)]
        if ahead > MAX_AHEAD:
            raise ShockError(f"at {raw!r}: at most ten years ahead")
        return At(ahead=ahead)
    if raw.isascii() and raw.isdigit() and len(raw) <= 12:
        return At(timestamp=int(raw))
    try:
        dt = datetime.fromisoformat(raw) if raw.isascii() and len(raw) <= 40 else None
    except ValueError:
        dt = None
    if dt is None:
        raise ShockError(f"at {raw[:60]!r}: expected +30d (s, m, h, d, w), unix seconds or an ISO-8601 time")
    return At(timestamp=int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()))


@dataclass(frozen=True, slots=True)
class _Point:
    asset: str  #: the with_price key
    symbol: str
    price: int | None  #: in the simulator's units; None where no simulator prices it


def price_points(p: Position) -> list[_Point]:
    """Every price of the position a shock can name, in its simulator's own units."""
    sim, out, seen = p.simulator, [], set()

    def add(asset: str, symbol: str, price: int | None) -> None:
        if asset.lower() not in seen:
            seen.add(asset.lower())
            out.append(_Point(asset, symbol, price))

    gmx = getattr(sim, "positions", None)
    if gmx and p.perps and len(gmx) == len(p.perps) and all(hasattr(s, "index_token") for s in gmx):
        # GMX prices are per token base unit (USD*1e30), not the legs' per whole token: take the simulator's own.
        syms = {leg.asset.lower(): leg.symbol for leg in p.collateral}
        for leg, s in zip(p.perps, gmx, strict=True):
            add(s.index_token, leg.market.split("/")[0], s.index_price)
            add(s.collateral_token, syms.get(s.collateral_token.lower(), s.collateral_token), s.collateral_price)
            if s.pool_token.lower() in syms:
                add(s.pool_token, syms[s.pool_token.lower()], s.pool_token_price)
    markets, prices = getattr(sim, "markets", None), getattr(sim, "prices", None)
    if markets is not None and isinstance(prices, tuple):
        for m, price in zip(markets, prices, strict=True):  # Synthetix: markets by symbol, index prices D18
            add(m.symbol, m.symbol, price)
    for leg in (*p.collateral, *p.debt):
        add(leg.asset, leg.symbol, leg.price if sim is not None else None)
    if sim is None:
        for perp in p.perps:
            add(perp.market, perp.market.split("-")[0].split("/")[0], None)
    return out


def _resolve(positions: Sequence[Position], shocks: Sequence[Shock]) -> dict[tuple[str, str], Shock]:
    """(chain, asset lower) -> the shock that moves it; a ShockError for a target naming nothing, or two assets."""
    by_symbol: dict[tuple[str, str], set[str]] = {}
    assets: set[tuple[str, str]] = set()
    for p in positions:
        for pt in price_points(p):
            by_symbol.setdefault((p.chain, pt.symbol.lower()), set()).add(pt.asset.lower())
            assets.add((p.chain, pt.asset.lower()))
    out: dict[tuple[str, str], Shock] = {}
    for s in shocks:
        if s.is_address:
            hits = {k for k in assets if k[1] == s.target.lower()}
        else:
            hits = set()
            for (chain, sym), found in by_symbol.items():
                if sym != s.target.lower():
                    continue
                if len(found) > 1:
                    listed = ", ".join(sorted(found))
                    raise ShockError(f"shock {s}: {s.target!r} is ambiguous on {chain} ({listed}); give the address")
                hits |= {(chain, a) for a in found}
        if not hits:
            known = sorted({sym for _, sym in by_symbol})
            raise ShockError(f"shock {s}: no position has an asset {s.target!r} (known: {', '.join(known)[:300]})")
        for k in hits:
            if k in out and out[k] != s:
                raise ShockError(f"shock {s}: {s.target!r} is shocked twice")
            out[k] = s
    return out


def verdict(sim: Simulator) -> bool:
    """The protocol's own liquidation check on a simulator: liquidatable() where it has one, else health < 1."""
    fn = getattr(sim, "liquidatable", None)
    if callable(fn):
        return bool(fn())
    healthy = getattr(sim, "healthy", None)  # Morpho's _isHealthy
    if callable(healthy):
        return not healthy()
    h = sim.health()
    return h is not None and h < WAD  # Aave's Pool: HEALTH_FACTOR_LIQUIDATION_THRESHOLD is 1e18


def _unchanged(sim: Simulator, asset: str, price: int) -> bool:
    """Whether with_price ignores this asset: a protocol that values it at a fixed price, or does not price it."""
    try:
        probe = sim.with_price(asset, price * 2 + 1)
    except (ValueError, KeyError):
        return True
    return probe is sim or probe == sim


def _shifted(leg: Leg, moved: dict[str, Moved]) -> Leg:
    m = moved.get(leg.asset.lower())
    if m is None or not m.before:
        return leg
    # Display values follow the price proportionally; the exact check stays the simulator's.
    return replace(leg, price=leg.price * m.after // m.before, value=leg.value * m.after // m.before)


def _one(p: Position, wanted: dict[tuple[str, str], Shock], at: At, th: Thresholds) -> Outcome:
    when = at.of(p)
    base = dict(position=p, at=when, health_before=p.health, liquidatable_before=p.liquidatable, thresholds=th)
    points = [
        (pt, wanted[(p.chain, pt.asset.lower())]) for pt in price_points(p) if (p.chain, pt.asset.lower()) in wanted
    ]
    sim = p.simulator
    if sim is None or when < p.block.timestamp:
        why = (
            f"{p.protocol} positions carry no simulator: they cannot be shocked"
            if sim is None
            else f"at {when} is before the read block's time {p.block.timestamp}"
        )
        lvl = classify(p.health, p.liquidatable, th.warn, th.critical)
        notes = (why,) if points or sim is not None else ()
        status = "not shockable" if notes else "unaffected"
        return Outcome(
            **base,
            status=status,
            moved=(),
            notes=notes,
            health_after=p.health,
            liquidatable_after=p.liquidatable,
            level_after=lvl,
            advice_after=None,
        )
    if when != p.block.timestamp:
        sim = sim.at_time(when)
    moved, notes = [], []
    for pt, shock in points:
        if pt.price is None or _unchanged(sim, pt.asset, pt.price):
            notes.append(f"{pt.symbol}: {p.protocol} does not price it by an oracle here; shock {shock} not applied")
            continue
        new = shock.apply(pt.price)
        sim = sim.with_price(pt.asset, new)
        moved.append(Moved(pt.asset, pt.symbol, pt.price, new))
    health, liq = sim.health(), verdict(sim)
    shifted = {m.asset.lower(): m for m in moved}
    after = replace(
        p,
        collateral=tuple(_shifted(x, shifted) for x in p.collateral),
        debt=tuple(_shifted(x, shifted) for x in p.debt),
        health=health,
        liquidatable=liq,
        simulator=sim,
    )
    advice = advise(after, th.target) if (p.has_debt or p.perps) else None
    status = "shocked" if moved else ("not shockable" if notes else "unaffected")
    return Outcome(
        **base,
        status=status,
        moved=tuple(moved),
        notes=tuple(notes),
        health_after=health,
        liquidatable_after=liq,
        level_after=classify(health, liq, th.warn, th.critical),
        advice_after=advice,
    )


def simulate(
    positions: Sequence[Position],
    shocks: Sequence[Shock],
    at: At | None,
    thresholds: Thresholds | Callable[[Position], Thresholds],
    known: Sequence[Position] | None = None,
) -> list[Outcome]:
    """Every position after the shocks (and interest to `at`), with its verdict and the advice that restores target.

    `thresholds` is one set for all, or a function giving each position's (alert overrides). Raises ShockError for
    a shock naming no asset, an ambiguous symbol, or the same asset shocked twice. Symbols resolve over `known`
    (default: `positions`), so one position can be simulated under a scenario that names another's assets.
    """
    wanted = _resolve(positions if known is None else known, shocks)
    pick = thresholds if callable(thresholds) else (lambda _p: thresholds)
    return [_one(p, wanted, at or At(), pick(p)) for p in positions]
