"""The probability listener: each position's liquidation probability, its price histories read off the check path.

A check's positions get their estimates while the check is staged, from the histories already read (pure math,
microseconds a position, and kept while neither the histories nor the position's health moved by a basis point);
after the commit a background task reads what changed (a feed's new rounds, the feeds of new positions) and
estimates again the positions those change, so no check waits on a feed's history, and a new round costs the next
check nothing. The first check after a start therefore says the history is being read, and
the next one carries the figures.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watcher.adapters.base import VenueReader
from watcher.chain import ChainClient
from watcher.config import Config
from watcher.engine.heads import first_done
from watcher.engine.publish import Check, Staged
from watcher.model import Position
from watcher.outlook import Outlook
from watcher.perp_probability import log_distance
from watcher.probability import Estimate
from watcher.readings import Readings
from watcher.store import Store

log = logging.getLogger("watcher")

DAY = 86_400
_BP = 10**14  #: a basis point of health (WAD): finer moves keep an estimate
_BPS = 10_000  #: and of a perp leg's log distance to its liquidation price
#: a refresh is a few eth_calls under the client's own deadlines; this bounds a pathological one as a whole
REFRESH_TIMEOUT = 120.0
_Todo = tuple[Position, tuple[object, ...]]  #: a position and the inputs its estimate is made from
#: positions estimated again between two yields to the event loop (a few milliseconds of math)
_CHUNK = 200


@dataclass(frozen=True, slots=True)
class _Kept:
    inputs: tuple[object, ...]
    estimates: list[Estimate]


class Probabilities:
    """Estimates per position (`get`), and the task that keeps their price histories read (`run`)."""

    def __init__(
        self,
        cfg: Config,
        clients: Mapping[str, ChainClient],
        store: Store | None = None,
        now: float = 0.0,
        *,
        venues: Sequence[VenueReader] = (),
        session: Callable[[], Any] = lambda: None,
    ) -> None:
        pc = cfg.probability
        self.enabled = pc.enabled
        self.store = store
        self.session = session  #: the daemon's aiohttp session, which venues' candles are read through
        self.outlook = Outlook([int(h) for h in pc.horizons], pc.rounds, venues={v.chain: v for v in venues})
        self.readings = Readings(pc.readings_every, pc.rounds)
        if store is not None and self.enabled:
            # a restart goes on from the readings it took before: the samples are spread over hours, not a check
            self.readings.load(store.price_readings(now - pc.readings_every * pc.rounds * 2, pc.rounds))
        self.outlook.readings = self.readings
        self.clients = dict(clients)
        self.chains = {name: c.name for name, c in clients.items()}
        self.errors: dict[str, str] = {}  #: per chain, why its last history read failed
        self.refreshes = 0  #: background reads finished (tests and benches wait on it)
        self._kept: dict[str, _Kept] = {}
        self._due: dict[str, list[Position]] = {}
        self._staged: tuple[str, list[Position]] | None = None
        self._committed: dict[str, list[Position]] = {}  #: per source, the positions of its latest commit
        self._wake: asyncio.Event | None = None

    def get(self, key: str) -> list[Estimate] | None:
        """The position's estimates at its latest check, or None (disabled, or not checked yet)."""
        kept = self._kept.get(key)
        return kept.estimates if kept is not None else None

    def within_day(self, key: str) -> Estimate | None:
        """The 24 h estimate (the `alerts.warn_probability_24h` rule's), or None."""
        return next((e for e in self.get(key) or () if e.horizon_s == DAY), None)

    def stage(self, check: Check, staged: Staged) -> None:
        """Estimate every position read whose inputs changed since its estimate (usually none: see `_reestimate`)."""
        if not self.enabled:
            return
        version = self.outlook.version
        todo = [(p, i) for p in check.result.positions if self._stale(p, i := self._inputs(p, version))]
        if todo:
            self._estimate(todo)
        self._staged = (check.source, list(check.result.positions))

    def _inputs(self, p: Position, version: object) -> tuple[object, ...]:
        """What a position's estimate depends on: the same inputs give the same figures."""
        health = None if p.health is None else p.health // _BP
        # perps on several coins: the marks can move the boundary's nearest point while health holds still
        perps = tuple(round(d * _BPS) for leg in p.perps if (d := log_distance(leg)) is not None)
        return (version, health, p.liquidatable, p.has_debt, perps, self.errors.get(p.chain), self.readings.version)

    def _stale(self, p: Position, inputs: tuple[object, ...]) -> bool:
        kept = self._kept.get(p.key)
        return kept is None or kept.inputs != inputs

    def _estimate(self, todo: Sequence[_Todo], memo: dict[Any, Any] | None = None) -> None:
        try:
            got = self.outlook.cached([p for p, _ in todo], self.chains, self.errors, memo)
        except Exception:  # a figure is a convenience: its failure must not cost the check its commit
            log.exception("liquidation probability failed")
            got = {}
        for p, inputs in todo:
            if p.key in got:
                # derived, not state: kept even if this commit fails, as the same inputs give the same figures
                self._kept[p.key] = _Kept(inputs, got[p.key])
            else:
                self._kept.pop(p.key, None)

    async def _reestimate(self, positions: Sequence[Position]) -> None:
        """Estimate again, off the check path, the committed positions whose histories the refresh changed."""
        memo: dict[Any, Any] = {}  # the feeds' volatilities, once for all chunks: only this task changes histories
        for start in range(0, len(positions), _CHUNK):
            version = self.outlook.version
            chunk = []
            for p in positions[start : start + _CHUNK]:
                inputs = self._inputs(p, version)  # per chunk: a commit between two takes readings
                kept = self._kept.get(p.key)
                if kept is not None and kept.inputs[1:5] != inputs[1:5]:
                    continue  # a newer check staged this position in another state: its own estimate stands
                if kept is None or kept.inputs != inputs:
                    chunk.append((p, inputs))
            if chunk:
                self._estimate(chunk, memo)
            await asyncio.sleep(0)  # a check due meanwhile runs between chunks, not after all of them

    def applied(self, staged: Staged) -> None:
        """The check committed: its positions' histories are read next, off the check path."""
        if self._staged is None:
            return
        source, positions = self._staged
        self._staged = None
        rows = self.readings.sample(positions, staged.now)
        if rows and self.store is not None:
            try:
                self.store.add_price_readings(rows)
            except (sqlite3.Error, OSError) as exc:  # kept in memory; a restart would start these series anew
                log.warning("price readings not stored", extra={"error": f"{type(exc).__name__}: {exc}"})
        self._committed[source] = positions
        if positions and any(p.chain in self.clients or p.chain in self.outlook.venues for p in positions):
            self._due[source] = positions
            if self._wake is not None:
                self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Read the histories the committed checks need, one source's at a time, until `stop`."""
        self._wake = asyncio.Event()
        if self._due:
            self._wake.set()
        while not stop.is_set():
            await first_done(stop.wait(), self._wake.wait())
            self._wake.clear()
            due, self._due = self._due, {}
            for source, positions in due.items():
                await self._refresh(positions)
                # a new round changes every estimate it enters: made now, the next check finds them kept; from the
                # source's latest commit, as checks went on while the refresh waited on the node
                await self._reestimate(self._committed.get(source, positions))

    async def _refresh(self, positions: list[Position]) -> None:
        chains = {p.chain for p in positions if p.chain in self.clients}
        try:
            errors = await asyncio.wait_for(
                self.outlook.refresh(positions, self.clients, self.session()), REFRESH_TIMEOUT
            )
        except TimeoutError:
            errors = dict.fromkeys(chains, f"no answer within {REFRESH_TIMEOUT:g} s")
        except Exception as exc:  # a history is a convenience: its failure must not stop the task for good
            log.exception("price history refresh failed")
            errors = dict.fromkeys(chains, f"{type(exc).__name__}: {exc}")
        for c in chains:
            if c in errors:
                self.errors[c] = errors[c]
            else:
                self.errors.pop(c, None)
        self.refreshes += 1


__all__ = ["Probabilities"]
