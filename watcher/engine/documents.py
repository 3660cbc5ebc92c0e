"""The documents listener: each position's JSON document, as the API serves it, with the advice it carries."""

from __future__ import annotations

import json
import logging
from typing import Any

from watcher.alerts import Observation, raw_level
from watcher.config import Config
from watcher.engine.probabilities import Probabilities
from watcher.engine.publish import Check, Staged
from watcher.engine.rules import RuleBook
from watcher.forecast_doc import CACHE as FORECASTS
from watcher.forecast_doc import DAEMON_BUDGET_S
from watcher.ladder import Ladders
from watcher.model import Position
from watcher.render import position_json
from watcher.risk import Advice, Thresholds
from watcher.store import Store

log = logging.getLogger("watcher")

#: what a document remembers of its advice: (computed at, liquidation prices, advice)
Kept = tuple[float, list[Any], Any]


class Documents:
    """Writes the positions table; advice (milliseconds per position) is computed when it matters, else reused."""

    def __init__(self, store: Store, rules: RuleBook, cfg: Config, probabilities: Probabilities | None = None) -> None:
        self.rules = rules
        self.probabilities = probabilities
        self.cfg = cfg
        self.advised: dict[str, Kept] = store.advice_docs()
        self._staged: dict[str, Kept | None] = {}
        self.ladders = Ladders()

    def stage(self, check: Check, staged: Staged) -> None:
        """Stage a row per position read."""
        self._staged = {}
        with FORECASTS.budget(DAEMON_BUDGET_S):  # forecasts of ok positions: a bounded share of each check
            self._stage(check, staged)

    def _stage(self, check: Check, staged: Staged) -> None:
        for p in check.result.positions:
            rules = self.rules.rules_for(p)
            level = raw_level(Observation(check.now, p.health, p.liquidatable), rules).name.lower()
            fresh = self.advised.get(p.key)
            due = check.advised(p.key) or level != "ok" or not fresh
            advice = check.advice(p) if due or check.now - fresh[0] >= self.cfg.storage.history_every else None
            try:
                row, kept = self._row(p, Thresholds(rules.warn, rules.critical, check.target), advice, check.now)
            except Exception:  # one position's document must not stop the others' state and alerts
                log.exception("position document failed", extra={"position": p.key})
                continue
            staged.positions.append(row)
            self._staged[p.key] = kept

    def _row(
        self, p: Position, thresholds: Thresholds, advice: Advice | None, now: float
    ) -> tuple[dict[str, Any], Kept | None]:
        """The positions-table row, and the advice to remember once it is committed (None: forget it)."""
        family = self.cfg.protocol_of(p.protocol)
        doc = position_json(p, advice, thresholds, family)
        kept: Kept | None
        if advice is not None:
            kept = (now, doc["liquidation_prices"], doc["advice"])
        elif not p.has_debt:
            kept = None
        else:
            kept = self.advised.get(p.key)
        at, lps, adv = kept if kept is not None else (None, [], None)
        doc |= {"liquidation_prices": lps, "advice": adv, "advice_at": at, "updated_at": now}
        # a perp has no advice to follow: its ladder (a few replays) is rebuilt every check, see bench/bench_ladder.py
        refresh = advice is not None or bool(p.perps)
        doc["price_ladder"] = self.ladders.for_document(p, refresh=refresh)
        estimates = self.probabilities.get(p.key) if self.probabilities is not None else None
        if estimates is not None:
            doc["liquidation_probability"] = [e.as_json() for e in estimates]
        row = {
            "position": p.key,
            "protocol": family,
            "deployment": p.protocol,
            "chain": p.chain,
            "account": p.account,
            "label": p.label,
            "level": doc["level"],
            "health": None if p.health is None else str(p.health),
            "doc": json.dumps(doc),
            "updated_at": now,
            "block": p.block.number,
        }
        return row, kept

    def applied(self, staged: Staged) -> None:
        """Memory follows the committed documents."""
        for key, kept in self._staged.items():
            if kept is None:
                self.advised.pop(key, None)
            else:
                self.advised[key] = kept
        self._staged = {}
