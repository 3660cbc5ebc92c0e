"""The history listener: a position's reading is written when its level changed, its health moved, or time passed."""

from __future__ import annotations

from watcher.alerts import Observation, raw_level
from watcher.config import StorageConfig
from watcher.engine.publish import Check, Staged
from watcher.engine.rules import RuleBook
from watcher.model import BPS
from watcher.store import HistoryRow, Store


class History:
    """Writes history rows no more often than the health moves by `history_change_bps` or `history_every` passes."""

    def __init__(self, store: Store, rules: RuleBook, storage: StorageConfig) -> None:
        self.rules = rules
        self.storage = storage
        self.last: dict[str, tuple[float, int | None, str]] = store.last_history()  #: (at, health, level)
        self._staged: dict[str, tuple[float, int | None, str]] = {}

    def stage(self, check: Check, staged: Staged) -> None:
        """Stage a row for each position whose reading is worth keeping."""
        self._staged = {}
        now = check.now
        for p in check.result.positions:
            level = raw_level(Observation(now, p.health, p.liquidatable), self.rules.rules_for(p)).name.lower()
            if self.due(self.last.get(p.key), now, p.health, level):
                staged.history.append(
                    HistoryRow(
                        p.key, now, p.block.number, p.block.hash, p.health, level, p.total_collateral, p.total_debt
                    )
                )
                self._staged[p.key] = (now, p.health, level)

    def due(self, previous: tuple[float, int | None, str] | None, now: float, health: int | None, level: str) -> bool:
        """Whether a reading differs enough from the last one written to be written too."""
        if previous is None:
            return True
        at, old, old_level = previous
        if level != old_level or now - at >= self.storage.history_every:
            return True
        if old is None or health is None:
            return old != health
        return abs(health - old) * BPS > self.storage.history_change_bps * old

    def applied(self, staged: Staged) -> None:
        """Memory follows the committed rows."""
        self.last.update(self._staged)
        self._staged = {}
