"""The watcher's own price readings: a price history, sampled from its checks, for assets whose oracle keeps none.

A feed's past rounds are the better history (the oracle's own, there at once); where there are none (a Maker OSM,
a mock aggregator, a protocol whose feeds are not known) the prices the checks read, one every `readings_every`
seconds and kept in SQLite across restarts, become the history instead, once there are enough of them.
Timestamps are the watcher's clock at the check: when the price was seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from watcher.model import WAD, Position
from watcher.perp_probability import perp_driver

#: (chain, deployment, asset or market): one price series; the deployment's own oracle prices it
Key = tuple[str, str, str]


def prices_of(p: Position) -> dict[str, tuple[Key, int]]:
    """Per asset of the position (token address, or a perp's market), its series and the price this check read."""
    out: dict[str, tuple[Key, int]] = {}
    for leg in (*p.collateral, *p.debt):
        if leg.price > 0:
            out[leg.asset] = ((p.chain, p.protocol, leg.asset), leg.price)
    for perp in p.perps:
        mark = int(perp.mark_price * WAD)  # a Fraction: kept as an integer at 18 decimals
        driver = perp_driver(perp)  # the key perp_probability looks a leg's history up by
        if mark > 0:
            out[driver] = ((p.chain, p.protocol, driver), mark)
    return out


@dataclass
class Readings:
    """The sampled series in memory, the newest `keep` of each, and which are due for a new sample."""

    every: float  #: seconds between two samples of a series
    keep: int  #: samples kept per series (the probability's `rounds`)
    series: dict[Key, list[tuple[int, int]]] = field(default_factory=dict)
    version: int = 0  #: changes with every sample taken: estimates from the readings are then made again

    def load(self, stored: dict[Key, list[tuple[int, int]]]) -> None:
        """Start from the readings a previous run stored."""
        for key, points in stored.items():
            self.series[key] = list(points[-self.keep :])
        self.version += 1

    def sample(self, positions: Sequence[Position], now: float) -> list[tuple[str, str, str, float, int]]:
        """Take a sample of each series due one; the rows to store (chain, deployment, asset, at, price)."""
        rows: list[tuple[str, str, str, float, int]] = []
        for p in positions:
            for key, price in prices_of(p).values():
                points = self.series.setdefault(key, [])
                if points and now - points[-1][0] < self.every:
                    continue
                points.append((int(now), price))
                del points[: -self.keep]
                rows.append((*key, now, price))
        if rows:
            self.version += 1
        return rows

    def histories(self, p: Position) -> dict[str, list[tuple[int, int]]]:
        """The position's series, by asset (or market)."""
        return {asset: self.series.get(key, []) for asset, (key, _) in prices_of(p).items()}

    def count(self, p: Position) -> int:
        """The fewest samples any of the position's series has."""
        return min((len(h) for h in self.histories(p).values()), default=0)


__all__ = ["Key", "Readings", "prices_of"]
