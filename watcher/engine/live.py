"""The live-positions listener: the latest committed Position objects, with their simulators, for what-if requests."""

from __future__ import annotations

from watcher.engine.publish import Check, Staged
from watcher.engine.rules import RuleBook
from watcher.model import Position
from watcher.risk import Thresholds


class LivePositions:
    """Each source's positions from its last committed check; a source's unreadable check forgets its positions."""

    def __init__(self, rules: RuleBook, target: int) -> None:
        self.rules = rules
        self.target = target
        self.positions: dict[str, Position] = {}
        self._staged: tuple[str, dict[str, Position]] | None = None

    def stage(self, check: Check, staged: Staged) -> None:
        """Remember this source's positions until the commit."""
        self._staged = (check.source, {p.key: p for p in check.result.positions})

    def applied(self, staged: Staged) -> None:
        """Memory follows the commit: the source's old positions go (unknown now, or closed), its new ones come."""
        if self._staged is None:
            return
        source, fresh = self._staged
        # A venue's positions carry the venue's name as their chain, so one test covers chains and venues.
        self.positions = {k: p for k, p in self.positions.items() if p.chain != source} | fresh
        self._staged = None

    def get(self, key: str) -> Position | None:
        """The position's latest committed reading, or None."""
        return self.positions.get(key)

    def thresholds(self, p: Position) -> Thresholds:
        """The thresholds the daemon judges this position by (alert overrides applied), with the global target."""
        rules = self.rules.rules_for(p)
        return Thresholds(rules.warn, rules.critical, self.target)
