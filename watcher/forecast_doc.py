"""The forecast's JSON fields and text, and a per-position cache that keeps it off a check's repeated work.

A forecast costs a few dozen replays of the protocol's check; the inputs that decide it (balances, prices, the
market's stored indexes and rates) rarely all change between two checks. The cache reuses a forecast while they are
unchanged; for a position at level ok it also reuses one up to `STALE_OK` seconds old when only market state moved
(an ok position is far from its boundary; warn and worse are always computed on the state just read).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import fields, is_dataclass, replace
from decimal import Decimal
from typing import Any

from watcher.forecast import DAY, DEFAULT_HORIZON, Forecast, forecast
from watcher.model import Position

#: seconds an ok position's forecast may be reused although market state moved
STALE_OK = 600
#: fields that only say when, not what: a forecast is in absolute time and does not depend on them
_TIME_FIELDS = frozenset({"now", "accrue_to", "keeper_rate"})
_MAX_ENTRIES = 100_000
log = logging.getLogger("watcher")


def fingerprint(sim: Any) -> tuple[Hashable, Hashable] | None:
    """(everything the forecast depends on, the account's own part of it); None when it cannot be hashed."""
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
                tuple(r.price for r in used),
            )
            return hash((m.revision, m.emode.get(sim.emode), tuple(used), own)), hash(own)
        if not is_dataclass(sim):
            return None
        full = tuple((f.name, getattr(sim, f.name)) for f in fields(sim) if f.name not in _TIME_FIELDS)
        return hash(full), None
    except TypeError:  # a field holds a dict or list: no cache for it, compute each time
        return None


class ForecastCache:
    """The last forecast per position key, with what it was computed from."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[tuple[Hashable, Hashable] | None, Forecast]] = {}
        self.hits = self.misses = 0

    def get(self, p: Position, ok: bool = False) -> Forecast:
        """The position's forecast: reused while its inputs are unchanged (or, `ok`, only market state moved)."""
        key = fingerprint(p.simulator)
        start = p.block.timestamp
        kept = self._kept.get(p.key)
        if kept is not None and key is not None and kept[0] is not None and start >= kept[1].start:
            same = kept[0][0] == key[0]
            near = ok and key[1] is not None and kept[0][1] == key[1] and start - kept[1].start <= STALE_OK
            if same or near:
                self.hits += 1
                f = kept[1]
                # the same state later: the boundary is where it was, unless it has passed (then it is now)
                return f if f.at is None or f.at >= start else replace(f, at=start)
        self.misses += 1
        try:
            f = forecast(p)
        except Exception:  # a document without its forecast, rather than no document
            log.exception("forecast failed", extra={"position": p.key})
            return Forecast(None, DEFAULT_HORIZON, start, False, "not computed: the forecast failed", None)
        if len(self._kept) >= _MAX_ENTRIES:
            self._kept.clear()
        self._kept[p.key] = (key, f)
        return f


#: one cache per process: `watcher run` reuses forecasts across checks, `watcher check` computes each once
CACHE = ForecastCache()


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
    return f"Liquidation in {days_text(left)} at constant prices (interest)" if left < under else None


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
