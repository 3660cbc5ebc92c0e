"""The forecast's JSON fields and text, and a per-position cache that keeps it off a check's repeated work.

A forecast costs a few dozen replays of the protocol's check; the inputs that decide it (balances, prices, the
market's stored indexes and rates) rarely all change between two checks. The cache reuses a forecast while they are
unchanged; for a position at level ok it also reuses one up to about `STALE_OK` seconds old while the account's own
holdings are unchanged (market state and prices may have moved), and
`watcher run` gives ok positions only `DAEMON_BUDGET_S` of solving per check (the rest keep their older figures,
`as_of` says from when, or wait a few checks for their first). Warn and worse are always solved on the state just
read.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import fields, is_dataclass, replace
from decimal import Decimal
from typing import Any

from watcher.forecast import DAY, DEFAULT_HORIZON, Forecast, forecast
from watcher.model import Position

#: seconds an ok position's forecast may be reused although its inputs moved (each position 0.5x to 1.5x this)
STALE_OK = 600
#: seconds of solving per check for ok positions in `watcher run`; the rest reuse older figures or wait
DAEMON_BUDGET_S = 0.1
#: fields that only say when, not what: a forecast is in absolute time and does not depend on them
_TIME_FIELDS = frozenset({"now", "accrue_to", "keeper_rate"})
_MAX_ENTRIES = 100_000
log = logging.getLogger("watcher")


def fingerprint(sim: Any) -> Hashable | None:
    """A hash of everything the forecast depends on (all but the time); None when it cannot be hashed."""
    try:
        if type(sim).__name__ == "AaveSimulator":
            m = sim.market
            # only the reserves this account uses (bit pairs of its configuration) decide its forecast
            cfg, i, used = sim.config, 0, []
            while cfg:
                if cfg & 3 and i in m.reserves_by_id:
                    used.append(m.reserves_by_id[i])
                cfg >>= 2
                i += 1
            own = (
                sim.config,
                sim.emode,
                tuple(sorted(sim.scaled_collateral.items())),
                tuple(sorted(sim.scaled_debt.items())),
                tuple(sorted(sim.stable_debt.items())),
                tuple(sorted(sim.prices.items())),
            )
            return hash((m.revision, m.emode.get(sim.emode), tuple(used), own))
        if not is_dataclass(sim):
            return None
        return hash(tuple((f.name, getattr(sim, f.name)) for f in fields(sim) if f.name not in _TIME_FIELDS))
    except TypeError:  # a field holds a dict or list: no cache for it, compute each time
        return None


#: per simulator class, what the account itself holds (not the market around it), in units interest does not move
_HOLDINGS = {
    "AaveSimulator": lambda s: (
        s.config,
        s.emode,
        tuple(sorted(s.scaled_collateral.items())),
        tuple(sorted(s.scaled_debt.items())),
        tuple(sorted(s.stable_debt.items())),
    ),
    "CometSimulator": lambda s: (s.principal, s.balances, s.assets_in),
    "MorphoSimulator": lambda s: (s.market.id, s.borrow_shares, s.collateral),
    "MakerSimulator": lambda s: (s.ink, s.art),
    # perps: sizes, collateral and the position records funding and borrowing are measured from
    "GmxAccountSim": lambda s: tuple(
        (p.is_long, p.size_usd, p.size_tokens, p.collateral_amount, p.accrual is not None) for p in s.positions
    ),
    "SynthetixAccountSimulator": lambda s: (s.positions, s.collateral_value, s.debt, s.flagged),
}


def holdings(sim: Any) -> Hashable | None:
    """The account's own balances, for reusing an ok position's young forecast; None: never reuse one."""
    get = _HOLDINGS.get(type(sim).__name__)
    return None if get is None else get(sim)


class ForecastCache:
    """The last forecast per position key, with what it was computed from, and a solving budget per check."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Hashable | None, Hashable | None, Forecast]] = {}
        self.hits = self.misses = self.deferred = 0
        self.budget_s: float | None = None  #: None: solve everything asked (watcher check)
        self._spent = 0.0

    @contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        """Within this block (one check's documents), ok positions get at most `seconds` of solving."""
        self.budget_s, self._spent = seconds, 0.0
        try:
            yield
        finally:
            self.budget_s = None

    def _over_budget(self) -> bool:
        return self.budget_s is not None and self._spent >= self.budget_s

    def get(self, p: Position, ok: bool = False) -> Forecast:
        """The position's forecast: reused while its inputs are unchanged or, for an ok one, while it is young."""
        key = fingerprint(p.simulator)
        start = p.block.timestamp
        # what an old forecast must still share to stand in: the account's own holdings (a repayment is news)
        shape = holdings(p.simulator)
        kept = self._kept.get(p.key)
        if kept is not None and start >= kept[2].start:
            f = kept[2]
            same = key is not None and kept[0] == key
            passed = f.at is not None and f.at < start
            # spread ok positions' refreshes over checks: each one's own age limit, between 0.5 and 1.5 STALE_OK
            young = start - f.start <= STALE_OK * (500 + zlib.crc32(p.key.encode()) % 1000) // 1000
            stand_in = ok and not passed and shape is not None and kept[1] == shape
            if same or (stand_in and (young or self._over_budget())):
                self.hits += 1
                # the same state later: the boundary is where it was, unless it has passed (then it is now)
                return replace(f, at=start) if passed else f
        elif kept is None and ok and self._over_budget():
            self.deferred += 1
            return Forecast(None, DEFAULT_HORIZON, start, False, "pending: solved within the next checks", None)
        self.misses += 1
        t0 = time.perf_counter()
        try:
            f = forecast(p)
        except Exception:  # a document without its forecast, rather than no document
            log.exception("forecast failed", extra={"position": p.key})
            return Forecast(None, DEFAULT_HORIZON, start, False, "not computed: the forecast failed", None)
        finally:
            self._spent += time.perf_counter() - t0
        if len(self._kept) >= _MAX_ENTRIES:
            self._kept.clear()
        self._kept[p.key] = (key, shape, f)
        return f


#: one cache per process: `watcher run` reuses forecasts across checks, `watcher check` computes each once
CACHE = ForecastCache()


def ttl_of(p: Position, ok: bool = False) -> int | None:
    """Seconds from the read block to liquidation at constant prices, for the alert rule; None if none is known."""
    if not (p.has_debt or p.perps):  # perps owe fees and funding without a debt leg
        return None
    f = CACHE.get(p, ok)
    return None if f.at is None else max(f.at - p.block.timestamp, 0)


def days_text(seconds: int) -> str:
    """A duration as days (one decimal), or hours under a day."""
    if seconds < DAY:
        return f"{Decimal(seconds) / 3600:.1f} hours"
    return f"{Decimal(seconds) / DAY:.1f} days"


def forecast_line(p: Position, f: Forecast, under: int = 30 * DAY) -> str | None:
    """ "Liquidation in N days at constant prices" when the forecast is within `under` seconds, else None."""
    if f.at is None or p.liquidatable:
        return None
    left = f.at - p.block.timestamp
    what = "fees and funding" if p.perps else "interest"
    return f"Liquidation in {days_text(left)} at constant prices ({what})" if left < under else None


def add_forecast(doc: dict[str, Any], p: Position, ok: bool = False, cache: ForecastCache = CACHE) -> Forecast:
    """Add time_to_liquidation, interest_per_day and each leg's apy to a position document; returns the forecast."""
    f = cache.get(p, ok)
    doc["time_to_liquidation"] = {
        "at": f.at,
        "horizon_s": f.horizon_s,
        "seconds": None if f.at is None else f.at - p.block.timestamp,
        "modelled": f.modelled,
        "basis": f.basis,
        "as_of": f.start,
    }
    doc["interest_per_day"] = f.interest_per_day
    for side in ("collateral", "debt"):
        for leg in doc.get(side, ()):
            leg["apy"] = f.apy.get((side, leg["asset"]))
    return f


__all__ = ["CACHE", "DEFAULT_HORIZON", "ForecastCache", "add_forecast", "fingerprint", "forecast_line"]
